package controllertest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
)

// Buildpack is the buildpack name a Stager reports.
const Buildpack = "test"

// Stager is a stager (controller.Stager) that runs no buildpack: it packs
// the package's files as they are into a real droplet with start command
// "./run" on stack "linux", logging "-----> test buildpack: N files". A
// package holding a file named FAIL fails staging with a
// *staging.CompileError. It writes the droplet to Request.Droplet, which
// must not be nil (the controller always passes one). The zero value is
// ready to use.
type Stager struct {
	mu    sync.Mutex
	count int
	gate  chan struct{}
}

// Stagings counts the Stage calls so far.
func (s *Stager) Stagings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Hold makes every later staging, after logging "-----> waiting at the
// gate", wait until gate is closed or its context ends; a nil gate stops
// holding.
func (s *Stager) Hold(gate chan struct{}) {
	s.mu.Lock()
	s.gate = gate
	s.mu.Unlock()
}

// Stage implements controller.Stager.
func (s *Stager) Stage(ctx context.Context, req staging.Request) (staging.Result, error) {
	s.mu.Lock()
	s.count++
	gate := s.gate
	s.mu.Unlock()
	if req.Droplet == nil {
		return staging.Result{}, errors.New("controllertest: Stager needs Request.Droplet")
	}
	if req.LogWriter == nil {
		req.LogWriter = io.Discard
	}
	if gate != nil {
		fmt.Fprintln(req.LogWriter, "-----> waiting at the gate")
		select {
		case <-gate:
		case <-ctx.Done():
			return staging.Result{}, ctx.Err()
		}
	}
	zr, err := zip.NewReader(req.Package, req.PackageSize)
	if err != nil {
		return staging.Result{}, fmt.Errorf("%w: %v", staging.ErrBadPackage, err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, zf := range zr.File {
		if zf.Name == "FAIL" {
			fmt.Fprintln(req.LogWriter, "-----> FAIL file found")
			return staging.Result{}, &staging.CompileError{Buildpack: Buildpack, ExitStatus: 1, Reason: "FAIL file"}
		}
		if err := copyFile(tw, zf); err != nil {
			return staging.Result{}, fmt.Errorf("controllertest: stage %s: %w", zf.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return staging.Result{}, err
	}
	fmt.Fprintf(req.LogWriter, "-----> %s buildpack: %d files\n", Buildpack, len(zr.File))
	sum, err := droplet.Pack(req.Droplet, droplet.Info{DetectedBuildpack: Buildpack, StartCommand: "./run", Stack: "linux"}, &tb)
	if err != nil {
		return staging.Result{}, err
	}
	return staging.Result{Buildpack: Buildpack, StartCommand: "./run", Stack: "linux", DropletSHA1: sum.SHA1, DropletSize: sum.Size}, nil
}

// copyFile writes one zip entry to tw as a regular file.
func copyFile(tw *tar.Writer, zf *zip.File) error {
	rc, err := zf.Open()
	if err != nil {
		return err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	mode := int64(zf.Mode().Perm())
	if mode == 0 {
		mode = 0o644
	}
	if err := tw.WriteHeader(&tar.Header{Name: zf.Name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = tw.Write(b)
	return err
}
