// Package droplet defines the droplet: the staged, runnable form of an
// application that staging produces and a DEA runs. It is the contract
// between kiln's stager and its DEAs.
//
// # Format
//
// A droplet is a gzip-compressed tar archive holding, in this order:
//
//	staging_info.json   metadata (see Info), always the first entry
//	app/                the compiled application
//
// app/ is the application's working directory and its HOME at run time.
// Inside it, staging may leave
//
//	app/.profile.d/*.sh  shell fragments sourced, in name order, before the
//	                     start command (buildpacks put PATH and language
//	                     settings there, e.g. the directory of the node
//	                     binary the app was built for)
//	app/.profile         sourced after .profile.d, if present
//	app/bin/             put first on PATH, so a start command naming a
//	                     built binary ("hello") just works
//
// Entry names are relative ("app/server.js", never "/app" or "../x");
// symbolic links are relative and stay inside app/. Only directories,
// regular files and symbolic links occur. A droplet can therefore be fed,
// once decompressed, straight to warden.Container.StreamIn (see StreamIn).
//
// # Running a droplet
//
// Extract the droplet into a directory D (for a container, usually its
// root), then run the program returned by Launch with D as the working
// directory and the platform's environment (PORT, VCAP_APPLICATION,
// VCAP_SERVICES, ...). The launcher changes into app/, sets HOME to it, puts
// app/bin on PATH, sources .profile.d/*.sh and .profile, then replaces
// itself with "/bin/sh -c <start command>", so signals sent to the process
// tree reach the application.
//
// The SHA-1 of the compressed droplet bytes identifies a droplet: the
// controller stores and serves it by that hash and DEAs cache it by hash.
package droplet

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Entry names inside a droplet.
const (
	// InfoFile is the name of the metadata entry, always first.
	InfoFile = "staging_info.json"
	// AppDir is the directory holding the compiled application.
	AppDir = "app"
	// ProfileDir is the directory, relative to AppDir, whose *.sh files
	// the launcher sources before starting the application.
	ProfileDir = ".profile.d"
)

// MaxInfoSize bounds the size of staging_info.json a reader accepts; real
// ones are a few hundred bytes.
const MaxInfoSize = 1 << 20

// ErrInvalid reports a droplet or an Info that does not follow the format.
var ErrInvalid = errors.New("droplet: invalid droplet")

// Info is the metadata stored in staging_info.json.
type Info struct {
	// DetectedBuildpack is the human-readable name of the buildpack that
	// detected the application ("go", "nodejs", or what an external
	// buildpack's bin/detect printed).
	DetectedBuildpack string `json:"detected_buildpack"`
	// Buildpack is the key the buildpack was selected by (a built-in
	// buildpack's name or the external buildpack's name or URL), empty if
	// unknown.
	Buildpack string `json:"buildpack,omitempty"`
	// BuildpackVersion is the buildpack's version, if it reports one.
	BuildpackVersion string `json:"buildpack_version,omitempty"`
	// StartCommand is the shell command that starts the web process; it
	// runs in app/ after the profile scripts. Required.
	StartCommand string `json:"start_command"`
	// Stack is the stack (root file system family) the droplet was built
	// for, e.g. "linux".
	Stack string `json:"stack"`
	// ProcessTypes are all the process types the buildpack and the
	// Procfile declared (name to command); "web" equals StartCommand.
	ProcessTypes map[string]string `json:"process_types,omitempty"`
}

// Validate reports, with ErrInvalid, an Info a DEA could not run.
func (i Info) Validate() error {
	if strings.TrimSpace(i.StartCommand) == "" {
		return fmt.Errorf("%w: empty start_command", ErrInvalid)
	}
	if strings.IndexByte(i.StartCommand, 0) >= 0 {
		return fmt.Errorf("%w: start_command holds a NUL byte", ErrInvalid)
	}
	return nil
}

// Marshal returns the JSON encoding of i as stored in staging_info.json.
func (i Info) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(i, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("droplet: encode info: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseInfo decodes and validates the contents of staging_info.json.
func ParseInfo(b []byte) (Info, error) {
	var i Info
	if err := json.Unmarshal(b, &i); err != nil {
		return Info{}, fmt.Errorf("%w: %s: %w", ErrInvalid, InfoFile, err)
	}
	if err := i.Validate(); err != nil {
		return Info{}, err
	}
	return i, nil
}

// launchScript is the shell program Launch returns. The start command is
// passed as $1 rather than spliced into the script, so no quoting of it is
// needed and compound commands ("a && b") work.
const launchScript = `cd ` + AppDir + ` || exit 1
export HOME="$PWD"
export PATH="$HOME/bin:${PATH:-/usr/local/bin:/usr/bin:/bin}"
if [ -d ` + ProfileDir + ` ]; then
  for f in ` + ProfileDir + `/*.sh; do
    if [ -r "$f" ]; then . "./$f"; fi
  done
  unset f
fi
if [ -r .profile ]; then . ./.profile; fi
exec /bin/sh -c "$1"
`

// Launch returns the program and arguments (argv[1:]) that start the
// droplet's web process. Run them with the working directory set to the
// directory the droplet was extracted into (the one holding app/).
func Launch(info Info) (path string, args []string) {
	return LaunchCommand(info.StartCommand)
}

// LaunchCommand is Launch for an explicit command, for example another
// process type from Info.ProcessTypes or a command the user overrode.
func LaunchCommand(command string) (path string, args []string) {
	return "/bin/sh", []string{"-c", launchScript, "kiln-launch", command}
}
