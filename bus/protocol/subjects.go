package protocol

// Subjects of the kernel. Publishers and subscribers named as in PROTOCOL.md.
const (
	// DEADiscover is requested by the controller to find a DEA for an
	// instance; DEAs able to run it reply with a DEAHello after a delay.
	DEADiscover = "dea.discover"
	// DEAStop is published by the controller to stop instances (a filter).
	DEAStop = "dea.stop"
	// DEAUpdate is published by the controller when an app's URIs change.
	DEAUpdate = "dea.update"
	// DEAFindDroplet is requested by the controller; every matching instance
	// answers with a FindDropletReply.
	DEAFindDroplet = "dea.find.droplet"
	// DEAStatus is requested by anyone; every DEA answers with DEAStatusReply.
	DEAStatus = "dea.status"
	// DEAHeartbeat is published by DEAs with the state of all instances.
	DEAHeartbeat = "dea.heartbeat"
	// DEAHelloSubject is published by a DEA when it boots.
	DEAHelloSubject = "dea.start"
	// DEAAdvertise is published by DEAs periodically and on change.
	DEAAdvertise = "dea.advertise"
	// DEALocate asks every DEA to advertise at once.
	DEALocate = "dea.locate"
	// DropletExited is published by a DEA when an instance exits.
	DropletExited = "droplet.exited"
	// DropletUpdated is published by the controller when an app's desired
	// state changed, so health managers reload it.
	DropletUpdated = "droplet.updated"
	// RouterRegister adds routes to every router.
	RouterRegister = "router.register"
	// RouterUnregister removes routes from every router.
	RouterUnregister = "router.unregister"
	// RouterStart is published by routers at start and periodically.
	RouterStart = "router.start"
	// RouterGreet is requested by registrars; routers answer with RouterStart.
	RouterGreet = "router.greet"
	// HealthManagerStart is published by a health manager at boot; DEAs
	// answer with a heartbeat.
	HealthManagerStart = "healthmanager.start"
	// HealthManagerStatus is requested by the controller (flapping/crashed).
	HealthManagerStatus = "healthmanager.status"
	// HealthManagerHealth is requested by the controller (running counts).
	HealthManagerHealth = "healthmanager.health"
	// HMRequests carries START/STOP requests from health managers to
	// controllers, which subscribe in queue group ControllerQueue.
	HMRequests = "cloudcontrollers.hm.requests"
	// ControllerQueue is the queue group controllers use for HMRequests.
	ControllerQueue = "cc"
	// ComponentDiscover is requested by anyone; every component answers.
	ComponentDiscover = "vcap.component.discover"
	// ComponentAnnounce is published by a component at start.
	ComponentAnnounce = "vcap.component.announce"
	// Staging is the queue subject of staging tasks.
	Staging = "staging"
	// StagingQueue is the queue group stagers use on Staging.
	StagingQueue = "stagers"
)

// DEAStartSubject returns the subject on which the DEA with the given id
// receives start messages: "dea.<id>.start".
func DEAStartSubject(deaID string) string { return "dea." + deaID + ".start" }

// LogSubject returns the subject carrying an app's log lines (a kiln
// extension): "logs.<app id>".
func LogSubject(app AppID) string { return "logs." + string(app) }

// BulkCredentialsSubject is requested by health managers; a controller
// answers with the HTTP basic credentials of its bulk API.
const BulkCredentialsSubject = "cloudcontroller.bulk.credentials"
