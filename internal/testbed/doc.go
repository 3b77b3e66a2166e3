// Package testbed is the home of the local test bed: a real Kubernetes control
// plane (kwokctl's binary runtime), fake nodes grouped in node pools, and real
// istiod processes. Its sub-packages each hold one idea: the binary cache, the
// cluster, node pools, kwok stages, the mesh install, the istiod runner, and the
// sample workload.
package testbed
