// Package tlsgen generates throw-away TLS material for tests: a certificate
// authority, a server certificate for 127.0.0.1 and a client certificate,
// written as PEM files that redis-server's --tls-* flags accept.
package tlsgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Bundle is one CA with a server and a client certificate it signed.
type Bundle struct {
	Dir string // where the PEM files are

	CAFile         string // CA certificate (PEM): --tls-ca-cert-file
	ServerCertFile string // server certificate (PEM), IP SAN 127.0.0.1: --tls-cert-file
	ServerKeyFile  string // server key (PEM, PKCS#8): --tls-key-file
	ClientCertFile string // client certificate (PEM)
	ClientKeyFile  string // client key (PEM, PKCS#8)

	CAPool     *x509.CertPool  // the CA, for tls.Config.RootCAs / ClientCAs
	ClientCert tls.Certificate // the client certificate with its key, for tls.Config.Certificates
}

// Generate creates a CA, a server certificate valid for 127.0.0.1 (IP SAN)
// and "localhost", and a client certificate, all ECDSA P-256 and valid for
// one day, and writes them into dir. name distinguishes the CA's subject.
func Generate(dir, name string) (*Bundle, error) {
	b := &Bundle{
		Dir:            dir,
		CAFile:         filepath.Join(dir, "ca.crt"),
		ServerCertFile: filepath.Join(dir, "server.crt"),
		ServerKeyFile:  filepath.Join(dir, "server.key"),
		ClientCertFile: filepath.Join(dir, "client.crt"),
		ClientKeyFile:  filepath.Join(dir, "client.key"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("tlsgen: CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	if err = writePEM(b.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	b.CAPool = x509.NewCertPool()
	b.CAPool.AddCert(caCert)

	leaf := func(cn string, usage x509.ExtKeyUsage, certFile, keyFile string, sans bool) (tls.Certificate, error) {
		key, kerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if kerr != nil {
			return tls.Certificate{}, kerr
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if sans {
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, lerr := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if lerr != nil {
			return tls.Certificate{}, fmt.Errorf("tlsgen: %s: %w", cn, lerr)
		}
		pk, lerr := x509.MarshalPKCS8PrivateKey(key)
		if lerr != nil {
			return tls.Certificate{}, lerr
		}
		if lerr = writePEM(certFile, "CERTIFICATE", der); lerr != nil {
			return tls.Certificate{}, lerr
		}
		if lerr = writePEM(keyFile, "PRIVATE KEY", pk); lerr != nil {
			return tls.Certificate{}, lerr
		}
		return tls.LoadX509KeyPair(certFile, keyFile)
	}
	if _, err = leaf(name+" server", x509.ExtKeyUsageServerAuth, b.ServerCertFile, b.ServerKeyFile, true); err != nil {
		return nil, err
	}
	if b.ClientCert, err = leaf(name+" client", x509.ExtKeyUsageClientAuth, b.ClientCertFile, b.ClientKeyFile, false); err != nil {
		return nil, err
	}
	return b, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n.Add(n, big.NewInt(1))
}

func writePEM(path, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("tlsgen: %w", err)
	}
	return nil
}
