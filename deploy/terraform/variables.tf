variable "kubeconfig_path" {
  description = "Path of the kubeconfig that reaches the cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kube_context" {
  description = "Context in the kubeconfig to use; empty for its current context."
  type        = string
  default     = ""
}

variable "environment" {
  description = "Which overlay to apply: dev, stage or prod (also the Terraform workspace it must run in)."
  type        = string

  validation {
    condition     = contains(["dev", "stage", "prod"], var.environment)
    error_message = "The environment must be dev, stage or prod."
  }
}

variable "image_repository" {
  description = "Repository of the sneakerstop image you pushed."
  type        = string
  default     = "ghcr.io/sneakerstop/sneakerstop"
}

variable "image_tag" {
  description = "Tag of the sneakerstop image to run (ignored when image_digest is set)."
  type        = string
  validation {
    condition     = !can(regex("^@", var.image_tag))
    error_message = "image_tag is a tag such as 0.2.0; give a digest as image_digest = \"sha256:...\"."
  }
}

variable "image_digest" {
  description = "Digest of the image to run (sha256:...), for immutable rollouts; overrides image_tag."
  type        = string
  default     = null
  validation {
    condition     = var.image_digest == null || can(regex("^sha256:[0-9a-f]{64}$", var.image_digest))
    error_message = "image_digest looks like sha256: followed by 64 hex digits."
  }
}

variable "replicas" {
  description = "Replica floor per service (its autoscaler's minReplicas; the ceiling becomes twice that, at least 4), e.g. { orders = 3 }."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.replicas) : contains(["identity", "catalog", "orders", "payments", "market", "storefront"], name)])
    error_message = "Replica counts are for identity, catalog, orders, payments, market or storefront."
  }
}

variable "jwt_secret" {
  description = "HS256 key for session tokens (at least 32 characters), shared by every service."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.jwt_secret) >= 32
    error_message = "The JWT secret must be at least 32 characters."
  }
}

variable "stripe_secret" {
  description = "Stripe secret key (sk_live_... or sk_test_...); empty with the simulated provider."
  type        = string
  sensitive   = true
  default     = ""
}

variable "postgres_password" {
  description = "dev only: password of the in-cluster PostgreSQL."
  type        = string
  sensitive   = true
  default     = ""
}

variable "database_urls" {
  description = "prod: a postgres:// URL per service (identity, catalog, orders, payments, market), e.g. of a managed PostgreSQL. In dev they are built for the in-cluster PostgreSQL."
  type        = map(string)
  sensitive   = true
  default     = {}
}

variable "ingress_namespace" {
  description = "Namespace of the ingress controller, whose pods may reach the services (labelled by Terraform); empty to label it yourself."
  type        = string
  default     = "ingress-nginx"
}

variable "monitoring_namespace" {
  description = "Namespace of Prometheus, whose pods may scrape the services (labelled by Terraform); empty to label it yourself."
  type        = string
  default     = "monitoring"
}

variable "kafka_sasl_password" {
  description = "Password of the Kafka user `sneakerstop` (SCRAM-SHA-512): stage and prod's in-cluster Kafka requires it (letters, digits, - and _ only, at least 16); or that of KAFKA_SASL_USERNAME at a managed Kafka. Empty in dev (no SASL)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    # The broker's format command takes it inside SCRAM-SHA-512=[name=...,password=...].
    condition     = can(regex("^[A-Za-z0-9_-]*$", var.kafka_sasl_password))
    error_message = "kafka_sasl_password may hold letters, digits, - and _ only."
  }
}

variable "kafka_keystore_password" {
  description = "Password of the Kafka nodes' PKCS#12 keystore and truststore (cert-manager writes them) in stage and prod. Empty in dev (no TLS)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "install_monitoring" {
  description = "Install kube-prometheus-stack (Prometheus Operator, Prometheus, Alertmanager, Grafana) into monitoring_namespace. Off: use the cluster's own."
  type        = bool
  default     = false
}

variable "monitoring_chart_version" {
  description = "Version of the kube-prometheus-stack chart, pinned."
  type        = string
  default     = "79.7.1"
}
