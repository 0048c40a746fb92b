// Package packaging holds the Debian package's description (nfpm.yaml), its
// maintainer scripts, example configs and copyright file, and the test that
// builds the package with `make deb`, checks its contents and installs and
// upgrades it in a throwaway root. It has no Go code of its own.
package packaging
