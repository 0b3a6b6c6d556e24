#!/usr/bin/env bash
# Checks the deployment files offline (nothing here can reach a cluster or a registry):
# renders every Kustomize overlay and validates it against the Kubernetes schemas, lints the
# YAML, parses the Terraform, and runs checkov over the Dockerfile, the rendered manifests
# and the Terraform. Every skipped checkov check carries its reason next to the resource.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

KUBERNETES_VERSION=1.32.0

# The Python tools live in a virtualenv outside the clone, reused while the pinned
# requirements stay the same.
venv="${SNEAKERSTOP_TOOLS:-$HOME/.cache/sneakerstop}/deploy-venv"
stamp="$venv/.requirements"
if ! cmp -s deploy/requirements.txt "$stamp" 2>/dev/null; then
  log "installing the deployment checkers (checkov, kubernetes-validate, yamllint, python-hcl2)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements.txt
  cp deploy/requirements.txt "$stamp"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  log "installing kubectl (Debian package)"
  apt-get update -qq && apt-get install -y -qq kubectl >/dev/null
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

log "yamllint deploy/"
"$venv/bin/yamllint" --strict deploy/k8s

for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  log "kustomize + kubernetes-validate: $name"
  kubectl kustomize "$overlay" >"$out/$name.yaml"
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$out/$name.yaml"
done

log "parse Terraform"
"$venv/bin/python" - deploy/terraform/*.tf <<'PY'
import sys, hcl2
for path in sys.argv[1:]:
    with open(path) as f:
        hcl2.load(f)
print(f"parsed {len(sys.argv) - 1} Terraform files")
PY
if command -v terraform >/dev/null 2>&1; then
  # fmt needs no providers and no network.
  TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive deploy/terraform
fi

log "checkov: Dockerfile, manifests, Terraform"
"$venv/bin/checkov" --skip-download --quiet --compact --framework dockerfile -f Dockerfile
"$venv/bin/checkov" --skip-download --quiet --compact --framework kubernetes -d "$out"
"$venv/bin/checkov" --skip-download --quiet --compact --framework terraform -d deploy/terraform
echo "deployment checks passed"
