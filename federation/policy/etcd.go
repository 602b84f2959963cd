package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The store keeps every resource and tombstone under Prefix as
// KIND/NAMESPACE/NAME → JSON of Resource. etcd is the cluster's source of
// truth: replicas of one cluster write with compare-and-swap on the key's
// revision and follow each other through a watch.

type etcdRecord struct {
	r   *Resource
	rev int64
}

func (s *Store) decode(kv *mvccpb.KeyValue) (*Resource, error) {
	var r Resource
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return nil, fmt.Errorf("policy: etcd key %s: %w", kv.Key, err)
	}
	if errs := r.validate(s.opts.MaxSpecBytes, field.NewPath(string(kv.Key))); len(errs) > 0 {
		return nil, fmt.Errorf("policy: etcd key %s: %w", kv.Key, errs.ToAggregate())
	}
	if want := s.opts.Prefix + r.etcdKey(); want != string(kv.Key) {
		return nil, fmt.Errorf("policy: etcd key %s holds %s", kv.Key, r.Key)
	}
	return &r, nil
}

// load reads every record and installs it, and drops held tombstones that
// etcd no longer has (collected by another replica). It returns the
// revision it read at.
func (s *Store) load(ctx context.Context) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(s.opts.Prefix)
	from := s.opts.Prefix
	var rev int64
	var rs []*Resource
	var revs []int64
	seen := map[Key]struct{}{}
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(500)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.opts.Client.Get(ctx, from, opts...)
		if err != nil {
			return 0, fmt.Errorf("policy: load from etcd: %w", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			r, err := s.decode(kv)
			if err != nil {
				s.log.Warn("skipping unreadable policy record", "err", err)
				continue
			}
			s.clock.Observe(r.Stamp)
			rs = append(rs, r)
			revs = append(revs, kv.ModRevision)
			seen[r.Key] = struct{}{}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	var gone []Key
	s.Snapshot().each(func(r *Resource) {
		if _, ok := seen[r.Key]; !ok && r.Deleted {
			gone = append(gone, r.Key)
		}
	})
	s.install(rs, revs, gone)
	return rev, nil
}

// follow watches etcd from rev on and installs what other replicas write.
// It owns no state besides the watch; it ends when ctx is cancelled.
func (s *Store) follow(ctx context.Context, rev int64) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		wch := s.opts.Client.Watch(clientv3.WithRequireLeader(ctx), s.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				s.log.Info("policy watch fell behind etcd compaction; reloading", "compacted", resp.CompactRevision)
				if r, err := s.load(ctx); err == nil {
					rev = r
				}
				break
			}
			if err := resp.Err(); err != nil {
				s.log.Warn("policy watch failed", "err", err)
				break
			}
			for _, ev := range resp.Events {
				s.event(ev)
			}
			rev = resp.Header.Revision
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

func (s *Store) event(ev *clientv3.Event) {
	if ev.Type == clientv3.EventTypePut {
		r, err := s.decode(ev.Kv)
		if err != nil {
			s.log.Warn("skipping unreadable policy record", "err", err)
			return
		}
		s.clock.Observe(r.Stamp)
		s.install([]*Resource{r}, []int64{ev.Kv.ModRevision}, nil)
		return
	}
	// A delete is a tombstone collected by another replica.
	k, ok := s.parseKey(string(ev.Kv.Key))
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev, held := s.revs[k]; held && rev < ev.Kv.ModRevision {
		s.installLocked(nil, nil, []Key{k})
	}
}

// parseKey turns an etcd key back into a resource key.
func (s *Store) parseKey(key string) (Key, bool) {
	rest, ok := strings.CutPrefix(key, s.opts.Prefix)
	if !ok {
		return Key{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return Key{}, false
	}
	k := Key{Kind: parts[0], Namespace: parts[1], Name: parts[2]}
	if k.Namespace == "-" {
		k.Namespace = ""
	}
	return k, true
}

// cas writes r if the key is still at rev. On a conflict it returns what
// etcd holds instead (nil when the key is gone).
func (s *Store) cas(ctx context.Context, r *Resource, rev int64) (int64, *etcdRecord, error) {
	k := s.opts.Prefix + r.etcdKey()
	val, err := json.Marshal(r)
	if err != nil {
		return 0, nil, fmt.Errorf("policy: %w", err)
	}
	resp, err := s.opts.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
		Then(clientv3.OpPut(k, string(val))).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return 0, nil, fmt.Errorf("policy: write %s: %w", r.Key, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		s.install(nil, nil, []Key{r.Key})
		return 0, nil, nil
	}
	other, err := s.decode(kvs[0])
	if err != nil {
		return 0, nil, err
	}
	return 0, &etcdRecord{r: other, rev: kvs[0].ModRevision}, nil
}

// casAll writes every record in one transaction if none of the keys moved.
// On a conflict it installs what etcd holds and returns nil revisions.
func (s *Store) casAll(ctx context.Context, rs []*Resource, revs []int64) ([]int64, error) {
	cmps := make([]clientv3.Cmp, len(rs))
	puts := make([]clientv3.Op, len(rs))
	gets := make([]clientv3.Op, len(rs))
	for i, r := range rs {
		k := s.opts.Prefix + r.etcdKey()
		val, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", revs[i])
		puts[i] = clientv3.OpPut(k, string(val))
		gets[i] = clientv3.OpGet(k)
	}
	resp, err := s.opts.Client.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
	if err != nil {
		return nil, fmt.Errorf("policy: write %d records: %w", len(rs), err)
	}
	if resp.Succeeded {
		out := make([]int64, len(rs))
		for i := range out {
			out[i] = resp.Header.Revision
		}
		return out, nil
	}
	var held []*Resource
	var heldRevs []int64
	var gone []Key
	for i, rr := range resp.Responses {
		kvs := rr.GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			if revs[i] != 0 {
				gone = append(gone, rs[i].Key)
			}
			continue
		}
		r, err := s.decode(kvs[0])
		if err != nil {
			return nil, err
		}
		held = append(held, r)
		heldRevs = append(heldRevs, kvs[0].ModRevision)
	}
	s.install(held, heldRevs, gone)
	return nil, nil
}
