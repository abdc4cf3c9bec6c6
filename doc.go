// Package kiln is a library-first SDK of composable PaaS kernel components:
// the kernel of the original open PaaS design rebuilt as importable Go
// packages. The components talk over a NATS-style message bus and can be
// assembled in one process or spread over many hosts.
//
// The map of the kernel:
//
//   - bus: the Bus interface (publish, subscribe, queue groups,
//     request/reply); bus/membus is the in-process implementation, bus/natsbus
//     runs over NATS (with an embedded server helper), bus/bustest is the
//     conformance suite, and bus/protocol holds the subjects and messages
//     every component shares.
//   - router: the HTTP reverse proxy fed by router.register messages.
//   - controller: the cloud controller (REST API, users, apps, staging and
//     placement orchestration) with controller/store for records,
//     controller/blobstore for packages and droplets, and controller/client.
//   - dea: the droplet execution agent that runs app instances in
//     containers; dea/placement decides whether and how fast a DEA answers a
//     placement request.
//   - healthmgr: the health manager, which compares desired and actual state
//     (healthmgr/drift) and asks the controller to correct drift.
//   - services: service brokers (Open Service Broker client and server,
//     PostgreSQL and in-memory brokers), provisioning and binding.
//   - warden: the container backend interfaces and implementations
//     (in-memory fake, plain processes, Linux namespaces and cgroups).
//   - staging: turns an uploaded package into a runnable droplet with
//     buildpacks.
//   - kerneltest: a whole kernel in-process on fakes for tests, in the
//     spirit of net/http/httptest.
//   - examples: thin mains that assemble the pieces into a platform: the
//     all-in-one kernel, one main per role, a broker, the kiln CLI and
//     sample apps.
//
// Every role package takes its dependencies as interfaces (bus.Bus, a store,
// a blobstore, a warden.Backend, a *slog.Logger, a prometheus.Registerer) and
// exposes Run(ctx) error, so embedders can drop a DEA or a router into their
// own daemons and tests can build whole kernels on in-memory fakes.
package kiln
