package natsbus

import "errors"

var (
	// ErrInvalidConfig is returned by Config.Validate, ServerConfig.Validate
	// and the constructors for an unusable configuration.
	ErrInvalidConfig = errors.New("natsbus: invalid config")
	// ErrAuthorization is returned by Connect when a server rejects the
	// connection's credentials.
	ErrAuthorization = errors.New("natsbus: authorization rejected")
	// ErrServerNotReady is returned by RunServer and
	// Server.ReadyForConnections when the embedded server does not accept
	// connections in time, for instance because its port is taken.
	ErrServerNotReady = errors.New("natsbus: server not ready for connections")
	// ErrServerStopped is returned by Server.Run when the server was shut
	// down before Run's context ended.
	ErrServerStopped = errors.New("natsbus: server stopped")
)
