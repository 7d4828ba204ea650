// Command release prepares and checks a release of this repository's
// modules, so that `go install github.com/quorumlock/quorumlock/cmd/redlock@latest`
// works for users.
//
// In the checkout, every nested module (cmd/redlock, redlocktest, the metrics
// modules, integration, bench/compare) requires the root module through a
// replace directive to the checkout, for development and CI. `go install
// …@version` refuses a module whose go.mod has replace directives, so a
// release commit drops them and requires the released version instead.
//
//	go run ./internal/release -check            # what `make release-check` runs
//	go run ./internal/release -apply v0.1.0     # rewrite the nested go.mod files for v0.1.0
//
// -check rewrites a copy of the tracked files for a test version, serves
// every module of the repository from a module proxy in a temporary
// directory (file://, the layout `go help goproxy` describes; third-party
// modules come from the local module cache, or GOPROXY), runs `go install
// github.com/quorumlock/quorumlock/cmd/redlock@latest` against it with an
// empty module cache, and checks that the installed tool reports that
// version. Nothing outside the temporary directory changes.
//
// -apply rewrites the nested go.mod files in place and prints the commit
// and tags to make: the root module's tag (vX.Y.Z) and one per nested
// module (cmd/redlock/vX.Y.Z, …), pointing at the release commit. Main keeps
// its replace directives; the release commit is tagged, not merged.
package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// checkVersion is the version -check publishes: a prerelease, which
// `@latest` resolves to when a module has no release.
const checkVersion = "v0.0.0-releasecheck"

func main() {
	check := flag.Bool("check", false, "check that `go install …/cmd/redlock@latest` works from a release of this checkout")
	apply := flag.String("apply", "", "rewrite the nested go.mod files for this release `version` (vX.Y.Z)")
	flag.Parse()
	var err error
	switch {
	case *check && *apply == "":
		err = runCheck()
	case !*check && *apply != "":
		err = runApply(*apply)
	default:
		fmt.Fprintln(os.Stderr, "usage: release -check | release -apply vX.Y.Z")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

// module is one go.mod of the repository.
type module struct {
	dir  string // relative to the repository root, "." for the root
	path string // module path
}

// repo finds the repository root (git) and its modules, root first.
func repo() (root string, mods []module, err error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", nil, fmt.Errorf("not in a git checkout: %w", err)
	}
	root = strings.TrimSpace(string(out))
	files, err := tracked(root)
	if err != nil {
		return "", nil, err
	}
	for _, f := range files {
		if path.Base(f) != "go.mod" {
			continue
		}
		dir := path.Dir(f)
		p, err := modulePath(filepath.Join(root, f))
		if err != nil {
			return "", nil, err
		}
		mods = append(mods, module{dir: dir, path: p})
	}
	sort.Slice(mods, func(i, j int) bool {
		if (mods[i].dir == ".") != (mods[j].dir == ".") {
			return mods[i].dir == "."
		}
		return mods[i].dir < mods[j].dir
	})
	if len(mods) == 0 || mods[0].dir != "." {
		return "", nil, errors.New("no go.mod at the repository root")
	}
	return root, mods, nil
}

func tracked(root string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files, nil
}

// goModJSON is the part of `go mod edit -json` this program reads.
type goModJSON struct {
	Module  struct{ Path string }
	Require []struct{ Path, Version string }
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
}

func readGoMod(file string) (goModJSON, error) {
	var m goModJSON
	out, err := exec.Command("go", "mod", "edit", "-json", file).Output()
	if err != nil {
		return m, fmt.Errorf("go mod edit -json %s: %w", file, err)
	}
	if err := json.Unmarshal(out, &m); err != nil {
		return m, fmt.Errorf("%s: %w", file, err)
	}
	return m, nil
}

func modulePath(file string) (string, error) {
	m, err := readGoMod(file)
	return m.Module.Path, err
}

// rewrite turns the go.mod of the nested module at dir (under root) into
// its release form: no replace of the repository's own modules, and every
// requirement of them at version.
func rewrite(root string, mods []module, dir, version string) error {
	file := filepath.Join(root, dir, "go.mod")
	m, err := readGoMod(file)
	if err != nil {
		return err
	}
	own := map[string]bool{}
	for _, md := range mods {
		own[md.path] = true
	}
	args := []string{"mod", "edit"}
	for _, r := range m.Replace {
		if own[r.Old.Path] {
			args = append(args, "-dropreplace="+r.Old.Path)
		}
	}
	for _, r := range m.Require {
		if own[r.Path] {
			args = append(args, "-require="+r.Path+"@"+version)
		}
	}
	if len(args) == 2 {
		return nil
	}
	args = append(args, file)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func runApply(version string) error {
	if !strings.HasPrefix(version, "v") || strings.Count(version, ".") < 2 {
		return fmt.Errorf("version %q is not of the form vX.Y.Z", version)
	}
	root, mods, err := repo()
	if err != nil {
		return err
	}
	for _, md := range mods[1:] {
		if err := rewrite(root, mods, md.dir, version); err != nil {
			return err
		}
	}
	fmt.Printf("rewrote %d nested go.mod files for %s. Now, on a release branch:\n", len(mods)-1, version)
	fmt.Printf("  git commit -am 'release %s' && git tag %s", version, version)
	for _, md := range mods[1:] {
		fmt.Printf(" && git tag %s/%s", md.dir, version)
	}
	fmt.Println("\n  git push origin --tags   # the tags, not the release commit, reach users")
	return nil
}

func runCheck() error {
	root, mods, err := repo()
	if err != nil {
		return err
	}
	files, err := tracked(root)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "release-check-")
	if err != nil {
		return err
	}
	defer func() {
		// The module cache is read-only; make it removable.
		_ = filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
		_ = os.RemoveAll(tmp)
	}()

	// A copy of the tracked files, rewritten for the release, served by a
	// proxy: one zip, go.mod, info and list per module.
	src, proxy := filepath.Join(tmp, "src"), filepath.Join(tmp, "proxy")
	if err = stage(root, src, proxy, files, mods); err != nil {
		return err
	}

	// go install …@latest from outside any module, with an empty module
	// cache: the repository's modules come from the proxy above, the others
	// from the local module cache's download directory (a proxy too) or,
	// when missing there, from GOPROXY.
	cache, _ := exec.Command("go", "env", "GOMODCACHE").Output()
	upstream, _ := exec.Command("go", "env", "GOPROXY").Output()
	gobin := filepath.Join(tmp, "bin")
	work := filepath.Join(tmp, "work")
	if err = os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	env := append(os.Environ(),
		"GOPROXY=file://"+filepath.ToSlash(proxy)+",file://"+filepath.ToSlash(filepath.Join(strings.TrimSpace(string(cache)), "cache", "download"))+","+strings.TrimSpace(string(upstream)),
		"GONOSUMDB="+mods[0].path, // the test version is not in the checksum database
		"GOMODCACHE="+filepath.Join(tmp, "modcache"),
		"GOBIN="+gobin, "GOWORK=off", "GOFLAGS=",
	)
	target := mods[0].path + "/cmd/redlock@latest"
	cmd := exec.Command("go", "install", target)
	cmd.Dir, cmd.Env = work, env
	if out, ierr := cmd.CombinedOutput(); ierr != nil {
		return fmt.Errorf("go install %s: %w\n%s", target, ierr, out)
	}
	tool := filepath.Join(gobin, "redlock")
	out, err := exec.Command(tool, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %w: %s", tool, err, out)
	}
	if !strings.Contains(string(out), "redlock "+checkVersion) {
		return fmt.Errorf("the installed tool reports %q, want the released version %s", strings.TrimSpace(string(out)), checkVersion)
	}
	fmt.Printf("release-check: go install %s works from a release of this checkout (%d modules); the tool reports %q\n",
		target, len(mods), strings.TrimSpace(string(out)))
	return nil
}

// stage copies the tracked files from root to src, rewrites the nested
// go.mod files there for checkVersion, and publishes every module in proxy.
func stage(root, src, proxy string, files []string, mods []module) error {
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, not yet committed
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(src, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	for _, md := range mods[1:] {
		if err := rewrite(src, mods, md.dir, checkVersion); err != nil {
			return err
		}
	}
	for _, md := range mods {
		if err := publish(src, proxy, files, mods, md); err != nil {
			return err
		}
	}
	return nil
}

// publish writes module md (its files under src) into the file proxy.
func publish(src, proxy string, files []string, mods []module, md module) error {
	dir := filepath.Join(proxy, filepath.FromSlash(md.path), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gomod, err := os.ReadFile(filepath.Join(src, md.dir, "go.mod"))
	if err != nil {
		return err
	}
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	prefix := md.path + "@" + checkVersion + "/"
	n := 0
	for _, f := range files {
		rel, ok := within(md.dir, f)
		if !ok || nestedElsewhere(mods, md, f) || path.Base(f) == "go.work" || path.Base(f) == "go.work.sum" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		w, err := zw.Create(prefix + rel)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		n++
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("module %s has no files", md.path)
	}
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{checkVersion, time.Now().UTC().Truncate(time.Second)})
	for name, data := range map[string][]byte{
		"list":                 []byte(checkVersion + "\n"),
		checkVersion + ".info": info,
		checkVersion + ".mod":  gomod,
		checkVersion + ".zip":  zbuf.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// within reports whether file f lies in directory dir, and its path there.
func within(dir, f string) (string, bool) {
	if dir == "." {
		return f, true
	}
	rel, ok := strings.CutPrefix(f, dir+"/")
	return rel, ok
}

// nestedElsewhere reports whether f belongs to a module nested inside md.
func nestedElsewhere(mods []module, md module, f string) bool {
	for _, o := range mods {
		if o.dir == md.dir {
			continue
		}
		if _, in := within(o.dir, f); in {
			if _, mdIn := within(md.dir, o.dir); mdIn || md.dir == "." {
				return true
			}
		}
	}
	return false
}
