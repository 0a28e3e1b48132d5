# shellcheck shell=sh
# Build time only: bind-mounted into a RUN step and sourced first (`. /build/extra-ca.sh && ...`),
# never copied into an image. When the optional build secret `extra_ca` (PEM certificates) is
# given, e.g. for a build whose outbound HTTPS is re-signed by a local CA,
#   docker build --secret id=extra_ca,src=extra-ca.pem ...
# the rest of that RUN step trusts the system's CA bundle plus those certificates: pip, apt,
# Python's ssl and curl are pointed at a combined bundle in a temporary file, removed when the
# step's shell exits, so no layer keeps it. Without the secret, nothing changes.
if [ -s /run/secrets/extra_ca ]; then
  ablate_ca_bundle=$(mktemp)
  ablate_apt_conf=$(mktemp)
  trap 'rm -f "$ablate_ca_bundle" "$ablate_apt_conf"' EXIT
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cat /etc/ssl/certs/ca-certificates.crt /run/secrets/extra_ca > "$ablate_ca_bundle"
  else
    cat /run/secrets/extra_ca > "$ablate_ca_bundle"
  fi
  printf 'Acquire::https::CAInfo "%s";\n' "$ablate_ca_bundle" > "$ablate_apt_conf"
  export PIP_CERT="$ablate_ca_bundle" SSL_CERT_FILE="$ablate_ca_bundle" \
    REQUESTS_CA_BUNDLE="$ablate_ca_bundle" CURL_CA_BUNDLE="$ablate_ca_bundle" \
    APT_CONFIG="$ablate_apt_conf"
fi
