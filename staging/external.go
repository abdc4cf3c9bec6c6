package staging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kiln-paas/kiln/warden"
)

// maxBuildpackBytes bounds an external buildpack held in memory.
const maxBuildpackBytes = 256 << 20

// external is a buildpack run by the bin/detect, bin/compile, bin/release
// protocol inside the staging container.
type external struct {
	name    string
	archive []byte // tar of the buildpack, validated
	prefix  string // directory inside archive holding bin/
	version string
}

// External loads the buildpack at src, a directory or a .zip, .tgz,
// .tar.gz or .tar archive, and returns it as a Buildpack named name. The
// buildpack holds bin/detect, bin/compile and bin/release, at its root or
// under its single top-level directory (as source archives have); files in
// bin/ are made executable. A VERSION file, if present, gives its version.
//
// The protocol, each program run in the staging container with the build
// environment and the app directory as working directory:
//
//	bin/detect <app dir>               exit 0 and print the detected name,
//	                                   or exit non-zero to pass
//	bin/compile <app dir> <cache dir>  build the app in place; output is
//	                                   the staging log
//	bin/release <app dir>              print YAML with
//	                                   default_process_types: {web: <cmd>}
//
// The buildpack is read into memory once; up to 256 MiB.
func External(name, src string) (Buildpack, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("staging: external buildpack: bad name %q", name)
	}
	var buf bytes.Buffer
	var err error
	fi, serr := os.Stat(src)
	switch {
	case serr != nil:
		err = serr
	case fi.IsDir():
		err = dirTar(&buf, src)
	case strings.HasSuffix(src, ".zip"):
		err = zipFileTar(&buf, src, fi.Size())
	case strings.HasSuffix(src, ".tgz"), strings.HasSuffix(src, ".tar.gz"), strings.HasSuffix(src, ".tar"):
		err = archiveTar(&buf, src)
	default:
		err = errors.New("not a directory, .zip, .tgz, .tar.gz or .tar")
	}
	if err != nil {
		return nil, fmt.Errorf("staging: external buildpack %s from %s: %w", name, src, err)
	}
	bp := &external{name: name, archive: buf.Bytes()}
	if err := bp.index(); err != nil {
		return nil, fmt.Errorf("staging: external buildpack %s from %s: %w", name, src, err)
	}
	return bp, nil
}

// index finds bin/ and VERSION and marks bin/ files executable.
func (e *external) index() error {
	files := map[string]bool{}
	tops := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(e.archive))
	var version []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(h.Name, "/")
		files[name] = h.Typeflag == tar.TypeReg
		top, _, _ := strings.Cut(name, "/")
		tops[top] = true
		// VERSION at the root or in the single top-level directory.
		if path.Base(name) == "VERSION" && h.Typeflag == tar.TypeReg && h.Size < 256 && strings.Count(name, "/") <= 1 {
			version, _ = io.ReadAll(tr)
		}
	}
	switch {
	case files["bin/compile"]:
	case len(tops) == 1:
		for t := range tops {
			e.prefix = t
		}
		if !files[e.prefix+"/bin/compile"] {
			return errors.New("no bin/compile")
		}
	default:
		return errors.New("no bin/compile")
	}
	for _, p := range []string{"bin/detect", "bin/release"} {
		if !files[path.Join(e.prefix, p)] {
			return fmt.Errorf("no %s", p)
		}
	}
	e.version = strings.TrimSpace(string(version))
	return e.makeExecutable()
}

// makeExecutable rewrites the archive with bin/ files executable.
func (e *external) makeExecutable() error {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(e.archive))
	binDir := path.Join(e.prefix, "bin") + "/"
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg && strings.HasPrefix(h.Name, binDir) {
			h.Mode |= 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	e.archive = out.Bytes()
	return nil
}

// Name implements Buildpack.
func (e *external) Name() string { return e.name }

// install streams the buildpack into the container once per staging and
// returns its directory as processes see it.
func (e *external) install(ctx context.Context, b *Build) (string, error) {
	dst := path.Join(buildpacksDir, sanitizeHandle(e.name))
	if b.installed == nil {
		b.installed = map[string]bool{}
	}
	if !b.installed[dst] {
		if err := b.Container.StreamIn(ctx, dst, bytes.NewReader(e.archive)); err != nil {
			return "", fmt.Errorf("install buildpack: %w", err)
		}
		b.installed[dst] = true
	}
	return b.Path(path.Join(dst, e.prefix)), nil
}

// Detect implements Buildpack.
func (e *external) Detect(ctx context.Context, b *Build) (string, bool, error) {
	dir, err := e.install(ctx, b)
	if err != nil {
		return "", false, err
	}
	var out bytes.Buffer
	err = b.Run(ctx, RunOptions{Stdout: &limitedBuffer{buf: &out, max: 4096}}, dir+"/bin/detect", b.AppDir)
	var xe *ExitError
	if errors.As(err, &xe) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	detected, _, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	return strings.TrimSpace(detected), true, nil
}

// Compile implements Buildpack.
func (e *external) Compile(ctx context.Context, b *Build) error {
	dir, err := e.install(ctx, b)
	if err != nil {
		return err
	}
	return b.Run(ctx, RunOptions{}, dir+"/bin/compile", b.AppDir, b.CacheDir)
}

// releaseYAML is what bin/release prints.
type releaseYAML struct {
	DefaultProcessTypes map[string]string `yaml:"default_process_types"`
}

// Release implements Buildpack.
func (e *external) Release(ctx context.Context, b *Build) (Release, error) {
	dir, err := e.install(ctx, b)
	if err != nil {
		return Release{}, err
	}
	var out bytes.Buffer
	if err := b.Run(ctx, RunOptions{Stdout: &limitedBuffer{buf: &out, max: 1 << 20}}, dir+"/bin/release", b.AppDir); err != nil {
		return Release{}, err
	}
	var ry releaseYAML
	if err := yaml.Unmarshal(out.Bytes(), &ry); err != nil {
		return Release{}, fmt.Errorf("bin/release printed invalid YAML: %w", err)
	}
	return Release{ProcessTypes: ry.DefaultProcessTypes, Version: e.version}, nil
}

// dirTar writes the host directory dir as a tar archive, refusing links
// that leave it and special files.
func dirTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := warden.CheckLinkTarget(name, filepath.ToSlash(target)); err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, filepath.ToSlash(target)
		default:
			return fmt.Errorf("%s is a special file", p)
		}
		if total += h.Size; total > maxBuildpackBytes {
			return fmt.Errorf("larger than %d bytes", maxBuildpackBytes)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, h.Size)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func zipFileTar(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	pkg, err := OpenPackage(f, size, PackageLimits{MaxFiles: 100_000, MaxBytes: maxBuildpackBytes})
	if err != nil {
		return err
	}
	return pkg.WriteTar(w)
}

// archiveTar copies a (possibly gzipped) tar file, checking its entries.
func archiveTar(w io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if !strings.HasSuffix(src, ".tar") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name, err := cleanZipName(h.Name)
		if err != nil {
			return err
		}
		if name == "." || h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		out := &tar.Header{Name: name, Mode: h.Mode & 0o7777, ModTime: h.ModTime, Typeflag: h.Typeflag, Format: tar.FormatPAX}
		switch h.Typeflag {
		case tar.TypeDir:
			out.Name += "/"
		case tar.TypeReg:
			out.Size = h.Size
		case tar.TypeSymlink:
			if err := warden.CheckLinkTarget(name, h.Linkname); err != nil {
				return err
			}
			out.Linkname = h.Linkname
		default:
			return fmt.Errorf("%s: unsupported entry type %q", h.Name, h.Typeflag)
		}
		if total += out.Size; total > maxBuildpackBytes {
			return fmt.Errorf("larger than %d bytes", maxBuildpackBytes)
		}
		if err := tw.WriteHeader(out); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	return tw.Close()
}
