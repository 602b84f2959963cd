package policyapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/meridian-mesh/meridian/api/v1alpha1"
	"github.com/meridian-mesh/meridian/federation/policy"
)

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// DefaultNamespace is given to objects without one; default "default".
	DefaultNamespace string
	// Force writes what only set-level checks refuse; the problems come
	// back as warnings.
	Force bool
	// DryRun admits and writes nothing.
	DryRun bool
}

// Result is what a write did to one object.
type Result struct {
	Key policy.Key
	// Outcome is created, configured, unchanged or deleted.
	Outcome         string
	ResourceVersion string
}

// WriteResult is the outcome of an apply or delete.
type WriteResult struct {
	Results  []Result
	Warnings []Violation
}

// Apply admits the objects of the sources and writes them, all or none:
// a *RefusedError names every problem. A write error after some objects
// were written names what was.
func (s *Server) Apply(ctx context.Context, srcs []Source, opts ApplyOptions) (WriteResult, error) {
	objs, err := parseSources(srcs, opts.DefaultNamespace)
	if err != nil {
		s.m.refused.WithLabelValues("invalid").Inc()
		return WriteResult{}, err
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	snap := s.cfg.Policies.Snapshot()
	keys := make([]policy.Key, len(objs))
	for i, o := range objs {
		keys[i] = keyOf(o)
	}
	current, _ := s.dec.objects(snap)
	res, err := s.admit(admission{view: s.cfg.Registry.View(), current: current, put: objs, managed: managedByKube(snap, keys)}, opts.Force)
	if err != nil {
		return res, err
	}
	for _, o := range objs {
		k, val, err := Encode(o, SourceAPI)
		if err != nil {
			return res, err
		}
		r := Result{Key: k, Outcome: "created"}
		if old, ok := snap.Get(k); ok {
			r.Outcome, r.ResourceVersion = "configured", fmt.Sprint(uint64(old.Stamp))
			if bytes.Equal(old.Spec, val) {
				r.Outcome = "unchanged"
			}
		}
		if !opts.DryRun && r.Outcome != "unchanged" {
			w, err := s.cfg.Policies.Put(ctx, k, val)
			if err != nil {
				return res, s.writeFailed(res, err)
			}
			r.ResourceVersion = fmt.Sprint(uint64(w.Stamp))
			s.log.Info("policy "+r.Outcome, "object", v1alpha1.Describe(o))
		}
		res.Results = append(res.Results, r)
	}
	return res, nil
}

// Delete removes objects, all or none: every key must exist, and the set
// left must pass the set-level checks (unless forced).
func (s *Server) Delete(ctx context.Context, keys []policy.Key, opts ApplyOptions) (WriteResult, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	snap := s.cfg.Policies.Snapshot()
	var missing []string
	for _, k := range keys {
		if _, ok := snap.Get(k); !ok {
			missing = append(missing, k.Kind+" "+k.Namespace+"/"+k.Name)
		}
	}
	if len(missing) > 0 {
		return WriteResult{}, &NotFoundError{What: strings.Join(missing, ", ")}
	}
	current, _ := s.dec.objects(snap)
	res, err := s.admit(admission{view: s.cfg.Registry.View(), current: current, del: keys, managed: managedByKube(snap, keys)}, opts.Force)
	if err != nil {
		return res, err
	}
	for _, k := range keys {
		if !opts.DryRun {
			if _, err := s.cfg.Policies.Delete(ctx, k); err != nil && !errors.Is(err, policy.ErrNotFound) {
				return res, s.writeFailed(res, err)
			}
			s.log.Info("policy deleted", "object", k.String())
		}
		res.Results = append(res.Results, Result{Key: k, Outcome: "deleted"})
	}
	return res, nil
}

// managedByKube names the objects among keys that a cluster's Kubernetes
// wrote: changing them here would last only until the custom resource
// changes, so it takes force.
func managedByKube(snap *policy.Snapshot, keys []policy.Key) []Violation {
	var out []Violation
	for _, k := range keys {
		r, ok := snap.Get(k)
		if !ok {
			continue
		}
		if _, src, err := Decode(r); err == nil && strings.HasPrefix(src, sourceKubePrefix) {
			out = append(out, Violation{Field: k.Kind + " " + k.Namespace + "/" + k.Name,
				Description: "is a custom resource of " + strings.TrimPrefix(src, sourceKubePrefix) + "'s Kubernetes: change it there with kubectl, or take it over with force"})
		}
	}
	return out
}

// admit runs the set-level checks; forced problems become warnings.
func (s *Server) admit(a admission, force bool) (WriteResult, error) {
	errs, warnings := a.check()
	errs = append(a.managed, errs...)
	if len(errs) > 0 && !force {
		s.m.refused.WithLabelValues("set").Inc()
		return WriteResult{}, &RefusedError{Violations: errs, Forceable: true}
	}
	for _, e := range errs {
		e.Description += " (forced)"
		warnings = append(warnings, e)
	}
	return WriteResult{Warnings: warnings}, nil
}

func (s *Server) writeFailed(res WriteResult, err error) error {
	done := make([]string, len(res.Results))
	for i, r := range res.Results {
		done[i] = r.Key.String()
	}
	return fmt.Errorf("policyapi: write failed after %d objects (%s): %w", len(done), strings.Join(done, ", "), err)
}

// Stored is an object as the store holds it.
type Stored struct {
	Object   v1alpha1.Object
	Resource *policy.Resource
	Source   string
}

// Get returns one object.
func (s *Server) Get(k policy.Key) (Stored, error) {
	r, ok := s.cfg.Policies.Snapshot().Get(k)
	if !ok {
		return Stored{}, &NotFoundError{What: k.Kind + " " + k.Namespace + "/" + k.Name}
	}
	o, src, err := Decode(r)
	if err != nil {
		return Stored{}, err
	}
	return Stored{Object: o, Resource: r, Source: src}, nil
}

// List returns the objects of a kind (every kind when empty) in a
// namespace (every namespace when empty). Objects that do not decode are
// left out; Run logs them.
func (s *Server) List(kind, namespace string) []Stored {
	snap := s.cfg.Policies.Snapshot()
	var out []Stored
	for _, k := range v1alpha1.Kinds() {
		if kind != "" && k.Name != kind {
			continue
		}
		for _, r := range snap.List(k.Name) {
			if namespace != "" && r.Namespace != namespace {
				continue
			}
			if o, src, err := Decode(r); err == nil {
				out = append(out, Stored{Object: o, Resource: r, Source: src})
			}
		}
	}
	return out
}
