// Package inject is Meridian's sidecar injection: a mutating admission
// webhook, served by meridiand over HTTPS, that adds the meridian-proxy
// sidecar and an iptables init container to pods created in namespaces
// labelled meridian.io/inject=enabled.
//
//	kube-apiserver ──AdmissionReview (POST /inject, TLS)──► Server.admit
//	                                                          │ decode the Pod
//	                                                          ▼
//	                                              Mutate (pure) ──► JSON Patch
//
// Mutate is a pure function of the pod and the Settings, tested as such; the
// Server is the edge: it decodes, answers, counts
// (meridian_inject_reviews_total{result}) and logs. A request that is not
// an AdmissionReview gets a 4xx naming what is wrong; a Pod that cannot be
// injected (no containers, a bad meridian.io/inject annotation, a container
// already named meridian-init) is denied with the field and the reason. The
// server keeps serving whatever it is sent.
//
// Who is injected: the MutatingWebhookConfiguration's namespaceSelector
// sends only pods of labelled namespaces, so its failurePolicy (Fail in the
// chart) can never block a pod anywhere else. Within them, a pod annotated
// meridian.io/inject: "false" is skipped, and so are hostNetwork pods (their
// iptables would be the node's) and pods that already have the sidecar.
//
// Trust: the serving certificate is signed by the mesh CA (package trust/ca)
// — the cluster's intermediate, read from etcd through StoreCA where the
// trust component keeps it — for the webhook Service's DNS names, and
// renewed at half-life; the caBundle holds the mesh's roots from the trust
// component's bundle. It is not an SVID:
// the API server verifies the webhook's host name, and SVIDs carry only a
// SPIFFE URI. When given a client and the configuration's name, the server
// writes the CA's roots into the configuration's caBundle and keeps them
// current, as istiod does, so that installing the chart needs no
// certificate step.
//
// The sidecar's own trust: it is pointed at meridiand's TLS xDS port
// (Settings.XDSAddress, 15011) and verifies meridiand there by its member
// SPIFFE ID (--xds-server-id, Config.ServerID) against the mesh's roots
// (--xds-ca). Those roots travel on the pod itself — the annotation
// meridian.io/xds-roots, projected by the downward API into the
// meridian-xds volume beside a service-account token for the audience
// "meridian", with which the sidecar attests itself (--xds-token-file) —
// so that injection needs no ConfigMap in each namespace (Istio's
// istio-ca-root-cert) nor a controller and permission to write one.
//
// What it must not do: decide anything about traffic. The sidecar learns its
// configuration from meridiand over xDS; the webhook only puts it in the pod.
package inject
