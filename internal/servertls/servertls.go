// Package servertls builds the TLS configuration of cmdtrack's HTTP servers
// (the push receiver and the console): a certificate, and optionally the CA
// whose client certificates are required.
package servertls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Config loads the certificate and key and, when clientCAFile is set,
// requires client certificates signed by that CA. Its errors name the file;
// callers add the setting that named it.
func Config(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client CA %s holds no PEM certificate", clientCAFile)
	}
	tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return tc, nil
}
