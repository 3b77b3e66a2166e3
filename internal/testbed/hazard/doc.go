// Package hazard is the test bed's hazards: what real clusters hold that
// breaks native sidecars (issue 13), as objects and as webhook servers on
// 127.0.0.1 run the way the test bed runs istiod.
package hazard
