# Applies SneakerStop's Kustomize overlay to a cluster: the namespace, the Secret holding
# what must not be in the repo, then every manifest of the overlay in dependency order.
#
# One configuration, one Terraform workspace (and so one state) per environment: `make apply
# ENV=stage` selects the `stage` workspace and reads stage.tfvars, and the guard below refuses
# to apply one environment's variables in another's workspace, so destroying dev can never
# touch prod's state or resources.

provider "kubernetes" {
  config_path    = pathexpand(var.kubeconfig_path)
  config_context = var.kube_context == "" ? null : var.kube_context
}

provider "kustomization" {
  kubeconfig_path = pathexpand(var.kubeconfig_path)
  context         = var.kube_context == "" ? null : var.kube_context
}

provider "helm" {
  kubernetes {
    config_path    = pathexpand(var.kubeconfig_path)
    config_context = var.kube_context == "" ? null : var.kube_context
  }
}

# Optional: Prometheus, the Prometheus Operator, Alertmanager and Grafana from the
# kube-prometheus-stack chart, for a cluster that has none. Off by default: most clusters
# already run one. Its CRDs are what the monitoring component (ServiceMonitor,
# PrometheusRule) and its Grafana's dashboard sidecar (the dashboard ConfigMap) need, and its
# namespace is labelled so that Prometheus may scrape the services.
resource "helm_release" "monitoring" {
  count            = var.install_monitoring ? 1 : 0
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.monitoring_chart_version
  namespace        = var.monitoring_namespace
  create_namespace = true
  wait             = true
  timeout          = 900

  values = [yamlencode({
    # Every ServiceMonitor and PrometheusRule in the cluster, not only the chart's own.
    prometheus = {
      prometheusSpec = {
        serviceMonitorSelectorNilUsesHelmValues = false
        ruleSelectorNilUsesHelmValues           = false
      }
    }
    grafana = {
      sidecar = {
        dashboards = { enabled = true, label = "grafana_dashboard", searchNamespace = "ALL" }
      }
    }
  })]
}

locals {
  # Must match `namespace:` in deploy/k8s/overlays/<environment>/kustomization.yaml.
  namespace = var.environment == "prod" ? "sneakerstop" : "sneakerstop-${var.environment}"
  services  = ["identity", "catalog", "orders", "payments", "market"]

  # dev: one database per service on the in-cluster PostgreSQL (the service creates it).
  dev_database_urls = {
    for service in local.services :
    service => "postgres://sneakerstop:${urlencode(var.postgres_password)}@postgres:5432/sneakerstop_${service}"
  }
  database_urls = var.environment == "dev" ? local.dev_database_urls : var.database_urls
}

resource "kubernetes_namespace" "sneakerstop" {
  metadata {
    name = local.namespace
    labels = {
      "app.kubernetes.io/part-of" = "sneakerstop"
      # Every workload here meets the restricted Pod Security Standard: enforce it.
      "pod-security.kubernetes.io/enforce"         = "restricted"
      "pod-security.kubernetes.io/enforce-version" = "latest"
    }
  }
}

# The namespaces whose pods may reach the services' port (see the NetworkPolicy).
resource "kubernetes_labels" "ingress" {
  for_each    = toset(compact([var.ingress_namespace]))
  api_version = "v1"
  kind        = "Namespace"
  metadata {
    name = each.value
  }
  labels = {
    "sneakerstop.dev/ingress" = "true"
  }
}

resource "kubernetes_labels" "monitoring" {
  for_each    = toset(compact([var.monitoring_namespace]))
  depends_on  = [helm_release.monitoring]
  api_version = "v1"
  kind        = "Namespace"
  metadata {
    name = each.value
  }
  labels = {
    "sneakerstop.dev/monitoring" = "true"
  }
}

resource "kubernetes_secret" "sneakerstop" {
  metadata {
    name      = "sneakerstop-secrets"
    namespace = kubernetes_namespace.sneakerstop.metadata[0].name
  }

  data = merge(
    {
      "jwt-secret"        = var.jwt_secret
      "stripe-secret"     = var.stripe_secret
      "postgres-password" = var.postgres_password
    },
    var.kafka_sasl_password == "" ? {} : { "kafka-sasl-password" = var.kafka_sasl_password },
    var.kafka_keystore_password == "" ? {} : { "kafka-keystore-password" = var.kafka_keystore_password },
    { for service, url in local.database_urls : "${service}-database-url" => url },
  )

  lifecycle {
    precondition {
      condition     = var.environment == terraform.workspace
      error_message = "This is the ${terraform.workspace} workspace but the variables are for ${var.environment}: use make apply ENV=${var.environment}, which selects its workspace."
    }
    precondition {
      condition     = alltrue([for service in local.services : contains(keys(local.database_urls), service)])
      error_message = "Every service needs a database URL: set database_urls for identity, catalog, orders, payments and market."
    }
    precondition {
      condition     = var.environment == "dev" || (length(var.kafka_sasl_password) >= 16 && length(var.kafka_keystore_password) >= 16)
      error_message = "stage and prod reach Kafka over SASL_SSL only: set kafka_sasl_password and kafka_keystore_password (at least 16 characters each)."
    }
    precondition {
      condition     = var.environment != "dev" || length(var.postgres_password) >= 12
      error_message = "dev runs PostgreSQL in the cluster: set postgres_password (at least 12 characters)."
    }
  }
}

data "kustomization_overlay" "sneakerstop" {
  resources = ["${path.module}/../k8s/overlays/${var.environment}"]

  # The base already renames `sneakerstop` to ghcr.io/sneakerstop/sneakerstop:<version>, so
  # that is the name to override (make check-deploy asserts they agree). A digest, when
  # given, pins the image instead of the tag.
  images {
    name     = "ghcr.io/sneakerstop/sneakerstop"
    new_name = var.image_repository
    new_tag  = var.image_digest == null ? var.image_tag : null
    digest   = var.image_digest
  }

  # The services read the Secret only at start: a change of it must roll them. The hash of
  # its contents in the pod template does that (the hash reveals nothing of the values).
  patches {
    target {
      kind = "Deployment"
    }
    patch = jsonencode([{
      op    = "add"
      path  = "/spec/template/metadata/annotations/checksum~1secrets"
      value = nonsensitive(sha256(jsonencode(kubernetes_secret.sneakerstop.data)))
    }])
  }

  # A service's replica floor is its autoscaler's minReplicas: Terraform never sets a
  # Deployment's count, so it does not undo the autoscaler's or `kubectl scale`.
  dynamic "patches" {
    for_each = var.replicas
    content {
      target {
        kind = "HorizontalPodAutoscaler"
        name = "sneakerstop-${patches.key}"
      }
      patch = jsonencode([
        { op = "replace", path = "/spec/minReplicas", value = patches.value },
        { op = "replace", path = "/spec/maxReplicas", value = max(patches.value * 2, 4) },
      ])
    }
  }
}

# Namespaced and cluster-scoped basics first (priority 0), then everything else (1), then
# what depends on the rest, such as webhooks (2): kbst/kustomization's documented pattern.
resource "kustomization_resource" "p0" {
  for_each = data.kustomization_overlay.sneakerstop.ids_prio[0]
  manifest = data.kustomization_overlay.sneakerstop.manifests[each.value]

  # The monitoring CRDs (if Terraform installs them) before the objects that use them.
  depends_on = [kubernetes_secret.sneakerstop, helm_release.monitoring]
}

resource "kustomization_resource" "p1" {
  for_each = data.kustomization_overlay.sneakerstop.ids_prio[1]
  manifest = data.kustomization_overlay.sneakerstop.manifests[each.value]

  wait = true
  timeouts {
    create = "10m"
    update = "10m"
  }

  depends_on = [kustomization_resource.p0]
}

resource "kustomization_resource" "p2" {
  for_each = data.kustomization_overlay.sneakerstop.ids_prio[2]
  manifest = data.kustomization_overlay.sneakerstop.manifests[each.value]

  depends_on = [kustomization_resource.p1]
}
