output "namespace" {
  description = "The namespace SneakerStop runs in."
  value       = local.namespace
}

output "image" {
  description = "The image the services run."
  value       = "${var.image_repository}:${var.image_tag}"
}
