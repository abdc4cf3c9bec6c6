// Package e2e holds kiln's end-to-end tests: whole kernels pushing the
// sample apps of examples/apps and checking them through the router. The
// in-process tests run on kerneltest (membus, memstore, warden/process);
// TestMultiProcess builds the role commands of examples/ and runs each as
// its own process on a real NATS server (and PostgreSQL when
// KILN_TEST_POSTGRES_URL is set), as a multi-host deployment would, and
// TestKernelCommand runs examples/kernel as a user would. The package has no
// code of its own.
package e2e
