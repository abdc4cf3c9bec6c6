package staging

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// NodeBuildpack stages Node.js apps (a package.json at the root; other npm
// files such as .npmignore alone do not count) with the staging host's node
// and npm. It runs "npm ci" when a package-lock.json or
// npm-shrinkwrap.json is present, else "npm install", omitting dev
// dependencies, with npm's cache kept in the app's build cache. The start
// command is the package's scripts.start, run in the app directory with
// node_modules/.bin on PATH; without one, "node <main>" when main is set,
// else "node server.js" when that file exists, as npm start does. A
// .profile.d script puts the host's node first on PATH and defaults
// NODE_ENV to production.
type NodeBuildpack struct{}

// Name implements Buildpack.
func (NodeBuildpack) Name() string { return "nodejs" }

// Detect implements Buildpack.
func (NodeBuildpack) Detect(_ context.Context, b *Build) (string, bool, error) {
	return "node.js", isFile(b.Source, "package.json"), nil
}

type packageJSON struct {
	Main    string            `json:"main"`
	Scripts map[string]string `json:"scripts"`
	Engines map[string]string `json:"engines"`
}

func readPackageJSON(b *Build) (packageJSON, error) {
	var pj packageJSON
	data, err := readSource(b.Source, "package.json", 4<<20)
	if err != nil {
		return pj, fmt.Errorf("read package.json: %w", err)
	}
	if err := json.Unmarshal(data, &pj); err != nil {
		return pj, fmt.Errorf("package.json is not valid JSON: %w", err)
	}
	return pj, nil
}

// Compile implements Buildpack.
func (NodeBuildpack) Compile(ctx context.Context, b *Build) error {
	if _, err := readPackageJSON(b); err != nil {
		return err
	}
	node, err := b.LookPath(ctx, "node")
	if err != nil {
		return err
	}
	npm, err := b.LookPath(ctx, "npm")
	if err != nil {
		return err
	}
	// The real binary, not a version manager's shim: the droplet refers
	// to it at run time.
	nodeExec, err := b.Output(ctx, node, "-p", "process.execPath")
	if err != nil {
		return err
	}
	ver, err := b.Output(ctx, node, "--version")
	if err != nil {
		return err
	}
	b.Logf("Using node %s (%s)", ver, nodeExec)
	env := []string{
		"npm_config_cache=" + b.CacheDir + "/npm",
		"npm_config_update_notifier=false",
		"npm_config_fund=false",
		"npm_config_audit=false",
		"NODE_ENV=production",
		// npm runs scripts with sh; make sure it finds this node first.
		"PATH=" + path.Dir(nodeExec) + ":" + b.lookupEnv("PATH"),
	}
	cmd := "install"
	if isFile(b.Source, "package-lock.json") || isFile(b.Source, "npm-shrinkwrap.json") {
		cmd = "ci"
	}
	b.Logf("Installing dependencies (npm %s)", cmd)
	if err := b.Run(ctx, RunOptions{Env: env}, npm, cmd, "--omit=dev", "--prefer-offline", "--no-progress", "--loglevel=warn"); err != nil {
		return err
	}
	profile := fmt.Sprintf("export PATH=\"$HOME/node_modules/.bin:\"%s\":$PATH\"\nexport NODE_ENV=\"${NODE_ENV:-production}\"\n", shellQuote(path.Dir(nodeExec)))
	return writeProfile(ctx, b, "000_nodejs", profile)
}

// Release implements Buildpack.
func (NodeBuildpack) Release(_ context.Context, b *Build) (Release, error) {
	pj, err := readPackageJSON(b)
	if err != nil {
		return Release{}, err
	}
	rel := Release{ProcessTypes: map[string]string{}}
	switch {
	case strings.TrimSpace(pj.Scripts["start"]) != "":
		rel.ProcessTypes["web"] = pj.Scripts["start"]
	case pj.Main != "":
		rel.ProcessTypes["web"] = "node " + shellQuote(pj.Main)
	case isFile(b.Source, "server.js"):
		rel.ProcessTypes["web"] = "node server.js"
	}
	return rel, nil
}
