package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meridian-mesh/meridian/registry"
)

// segmentStore keeps the local segment in the cluster's etcd for a fast
// restart, one key per entry so that each change writes only what it
// changed:
//
//	/meridian/registry/epoch                                  last epoch begun (decimal)
//	/meridian/registry/state                                  {"epoch":E,"version":V} the entries reflect
//	/meridian/registry/services/NS/NAME                       JSON registry.Service
//	/meridian/registry/endpoints/NS/SVC/ID/PORTNAME           JSON registry.Endpoint (ID and port
//	                                                          name path-escaped, "-" for no port name)
//
// Every write is fenced on the leader's election key: a deposed leader's
// late writes fail.
type segmentStore struct {
	client *clientv3.Client
	prefix string // ends in "/"
}

// maxOps stays under etcd's default of 128 operations per transaction.
const maxOps = 100

type persistedState struct {
	Epoch   uint64 `json:"epoch"`
	Version uint64 `json:"version"`
}

func (p *segmentStore) serviceKey(k registry.ServiceKey) string {
	return p.prefix + "services/" + k.Namespace + "/" + k.Name
}

func (p *segmentStore) endpointKey(k registry.EndpointKey) string {
	port := k.PortName
	if port == "" {
		port = "-"
	}
	return p.prefix + "endpoints/" + k.Service.Namespace + "/" + k.Service.Name + "/" + url.PathEscape(k.ID) + "/" + url.PathEscape(port)
}

// nextEpoch begins a new epoch: later than the last one stored and than
// the wall clock, so that epochs keep growing even if etcd is wiped.
func (p *segmentStore) nextEpoch(ctx context.Context, fence clientv3.Cmp) (uint64, error) {
	key := p.prefix + "epoch"
	for {
		resp, err := p.client.Get(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("federation: read epoch: %w", err)
		}
		var last uint64
		var rev int64
		if len(resp.Kvs) == 1 {
			last, _ = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
			rev = resp.Kvs[0].ModRevision
		}
		next := max(last+1, uint64(time.Now().UnixMilli()))
		tx, err := p.client.Txn(ctx).If(fence, clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, strconv.FormatUint(next, 10))).Commit()
		if err != nil {
			return 0, fmt.Errorf("federation: write epoch: %w", err)
		}
		if tx.Succeeded {
			return next, nil
		}
		if err := p.checkFence(ctx, fence); err != nil {
			return 0, err
		}
	}
}

func (p *segmentStore) checkFence(ctx context.Context, fence clientv3.Cmp) error {
	tx, err := p.client.Txn(ctx).If(fence).Commit()
	if err != nil {
		return fmt.Errorf("federation: %w", err)
	}
	if !tx.Succeeded {
		return errNotLeader
	}
	return nil
}

var errNotLeader = fmt.Errorf("federation: no longer the leader")

// load reads the persisted segment.
func (p *segmentStore) load(ctx context.Context) (registry.SegmentData, segVer, error) {
	var d registry.SegmentData
	var st persistedState
	err := p.scan(ctx, func(key string, val []byte) error {
		switch rest := key[len(p.prefix):]; {
		case rest == "state":
			return json.Unmarshal(val, &st)
		case len(rest) > 9 && rest[:9] == "services/":
			var s registry.Service
			if err := json.Unmarshal(val, &s); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			d.Services = append(d.Services, &s)
		case len(rest) > 10 && rest[:10] == "endpoints/":
			var e registry.Endpoint
			if err := json.Unmarshal(val, &e); err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			d.Endpoints = append(d.Endpoints, &e)
		}
		return nil
	})
	return d, segVer{st.Epoch, st.Version}, err
}

// scan calls fn for every key under the prefix, a page at a time, at one
// revision.
func (p *segmentStore) scan(ctx context.Context, fn func(key string, val []byte) error) error {
	end := clientv3.GetPrefixRangeEnd(p.prefix)
	from := p.prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(1000)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := p.client.Get(ctx, from, opts...)
		if err != nil {
			return fmt.Errorf("federation: read segment: %w", err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := fn(string(kv.Key), kv.Value); err != nil {
				return fmt.Errorf("federation: read segment: %w", err)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// writeAll makes etcd hold exactly the segment, writing only what differs.
func (p *segmentStore) writeAll(ctx context.Context, fence clientv3.Cmp, seg *registry.Segment) error {
	want := map[string][]byte{}
	seg.EachService(func(s *registry.Service) bool { want[p.serviceKey(s.Key())] = mustJSON(s); return true })
	seg.EachEndpoint(func(e *registry.Endpoint) bool { want[p.endpointKey(e.Key())] = mustJSON(e); return true })
	var ops []clientv3.Op
	err := p.scan(ctx, func(key string, val []byte) error {
		rest := key[len(p.prefix):]
		if rest == "state" || rest == "epoch" {
			return nil
		}
		if w, ok := want[key]; !ok {
			ops = append(ops, clientv3.OpDelete(key))
		} else if string(w) == string(val) {
			delete(want, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, v := range want {
		ops = append(ops, clientv3.OpPut(k, string(v)))
	}
	return p.commit(ctx, fence, ops, segVer{seg.Epoch(), seg.Version()})
}

// writeBatches writes the changes of batches (the last state of each key
// they touch).
func (p *segmentStore) writeBatches(ctx context.Context, fence clientv3.Cmp, batches []registry.Batch) error {
	last := map[string]clientv3.Op{}
	var order []string
	for _, b := range batches {
		for _, c := range b.Changes {
			var key string
			var op clientv3.Op
			switch {
			case c.Service != nil:
				key = p.serviceKey(c.Service.Key())
				op = clientv3.OpDelete(key)
				if c.Op == registry.OpPut {
					op = clientv3.OpPut(key, string(mustJSON(c.Service)))
				}
			default:
				key = p.endpointKey(c.Endpoint.Key())
				op = clientv3.OpDelete(key)
				if c.Op == registry.OpPut {
					op = clientv3.OpPut(key, string(mustJSON(c.Endpoint)))
				}
			}
			if _, ok := last[key]; !ok {
				order = append(order, key)
			}
			last[key] = op
		}
	}
	ops := make([]clientv3.Op, 0, len(order))
	for _, k := range order {
		ops = append(ops, last[k])
	}
	b := batches[len(batches)-1]
	return p.commit(ctx, fence, ops, segVer{b.Epoch, b.Version})
}

// commit writes ops in fenced transactions of at most maxOps, the state
// key in the last one.
func (p *segmentStore) commit(ctx context.Context, fence clientv3.Cmp, ops []clientv3.Op, v segVer) error {
	ops = append(ops, clientv3.OpPut(p.prefix+"state", string(mustJSON(persistedState{Epoch: v.epoch, Version: v.version}))))
	for len(ops) > 0 {
		n := min(len(ops), maxOps)
		tx, err := p.client.Txn(ctx).If(fence).Then(ops[:n]...).Commit()
		if err != nil {
			return fmt.Errorf("federation: persist segment: %w", err)
		}
		if !tx.Succeeded {
			return errNotLeader
		}
		ops = ops[n:]
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("federation: encode %T: %v", v, err)) // registry values always encode
	}
	return b
}
