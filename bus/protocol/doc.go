// Package protocol is the contract every kiln component shares on the bus:
// the subjects and the JSON messages of the kernel (router.register,
// dea.discover, dea.heartbeat, droplet.exited, cloudcontrollers.hm.requests
// and the rest). Field names are those of the original open PaaS system, so
// tools written for it can read kiln's traffic; kiln's additions use new
// field names that old readers ignore.
//
// Every message type has a Validate method that rejects what a handler could
// not act on. Decode unmarshals and validates in one step; unknown fields are
// tolerated. This package imports nothing of kiln.
package protocol
