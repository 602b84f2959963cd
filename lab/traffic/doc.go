// Package traffic is the lab's traffic generator: it calls demo services
// (lab/demo) at a steady rate, records where each answer came from, and
// summarizes the last seconds as per-destination shares and a success
// rate — the figures that show traffic leave a region during a drill or an
// outage and come back.
//
//	Generator.Run ──paced calls──► target (xds:///frontend..., a sidecar, a gateway)
//	      │ each result: start time, ok or status code, the hops of the reply
//	      ▼
//	ring of 100ms buckets (per target: ok, failed, by serving cluster, by path)
//	      │ Window(d): the last d;  Since(t): from t;  Recovery: time to ≥ X% after t
//	      ▼
//	Report ──► text table (lab up, lab status) · JSON (/stats, lab.json users)
//
// A result is filed under the time its request started, so that requests
// hanging on a cut link count against the moment of the cut, not the
// moment their deadline fired.
//
// What it must not do: retry, or pick destinations. Every call is one
// attempt; whatever the mesh does with it is what is measured.
package traffic
