package staging

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// PythonBuildpack stages Python apps with the staging host's python3. It
// detects a requirements.txt, app.py, main.py, or a Procfile whose web
// command runs python. Third-party packages in requirements.txt are
// installed with pip into the app's .python-packages (on PYTHONPATH at run
// time), pip's cache kept in the build cache; when the package index is
// unreachable this fails with a message saying so. An empty
// requirements.txt (or only comments) installs nothing. The start command
// is "python app.py" or "python main.py"; "python" and "python3" on the
// droplet's PATH run the interpreter the app was staged with.
type PythonBuildpack struct{}

// Name implements Buildpack.
func (PythonBuildpack) Name() string { return "python" }

// Detect implements Buildpack.
func (PythonBuildpack) Detect(_ context.Context, b *Build) (string, bool, error) {
	for _, f := range []string{"requirements.txt", "app.py", "main.py"} {
		if isFile(b.Source, f) {
			return "python", true, nil
		}
	}
	web := strings.Fields(sourceProcfile(b.Source)["web"])
	if len(web) > 0 && (strings.HasPrefix(web[0], "python") || web[0] == "gunicorn") {
		return "python", true, nil
	}
	return "", false, nil
}

// requirements returns the non-empty, non-comment lines of
// requirements.txt.
func requirements(data []byte) []string {
	var reqs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			reqs = append(reqs, line)
		}
	}
	return reqs
}

const pythonWrapper = "#!/bin/sh\nexec %s \"$@\"\n"

// Compile implements Buildpack.
func (PythonBuildpack) Compile(ctx context.Context, b *Build) error {
	py, err := b.LookPath(ctx, "python3")
	if err != nil {
		return err
	}
	// sys.executable is the real interpreter even when python3 is a
	// version manager's shim; the droplet refers to it at run time.
	exe, err := b.Output(ctx, py, "-c", "import sys; print(sys.executable)")
	if err != nil {
		return err
	}
	ver, err := b.Output(ctx, exe, "--version")
	if err != nil {
		return err
	}
	b.Logf("Using %s (%s)", ver, exe)
	for _, name := range []string{"python", "python3"} {
		if err := b.WriteFile(ctx, ".kiln/python/bin/"+name, fmt.Appendf(nil, pythonWrapper, shellQuote(exe)), 0o755); err != nil {
			return err
		}
	}
	profile := "export PATH=\"$HOME/.kiln/python/bin:$PATH\"\n" +
		"export PYTHONPATH=\"$HOME/.python-packages${PYTHONPATH:+:$PYTHONPATH}\"\n" +
		"export PYTHONUNBUFFERED=1\n"
	if err := writeProfile(ctx, b, "000_python", profile); err != nil {
		return err
	}
	data, err := readSource(b.Source, "requirements.txt", 1<<20)
	if err != nil {
		b.Logf("No requirements.txt: nothing to install")
		return nil
	}
	reqs := requirements(data)
	if len(reqs) == 0 {
		b.Logf("requirements.txt lists no packages: nothing to install")
		return nil
	}
	b.Logf("Installing %d requirement(s) with pip", len(reqs))
	err = b.Run(ctx, RunOptions{Env: []string{"PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_INPUT=1"}}, exe,
		"-m", "pip", "install", "--retries", "0", "--timeout", "10",
		"--target", b.AppDir+"/.python-packages", "--cache-dir", b.CacheDir+"/pip",
		"-r", "requirements.txt")
	var xe *ExitError
	if errors.As(err, &xe) {
		return fmt.Errorf("pip could not install requirements.txt (%s); is the Python package index reachable from the staging host?: %w", strings.Join(reqs, ", "), err)
	}
	return err
}

// Release implements Buildpack.
func (PythonBuildpack) Release(_ context.Context, b *Build) (Release, error) {
	rel := Release{ProcessTypes: map[string]string{}}
	for _, f := range []string{"app.py", "main.py"} {
		if isFile(b.Source, f) {
			rel.ProcessTypes["web"] = "python " + f
			break
		}
	}
	return rel, nil
}
