output "instance_id" {
  description = "EC2 instance id of the control plane."
  value       = aws_instance.this.id
}

output "private_ip" {
  description = "Private IPv4 address of the control plane in its VPC."
  value       = aws_instance.this.private_ip
}

output "public_ip" {
  description = "Public IPv4 address (only UDP 41641 is reachable on it); null without associate_public_ip."
  value       = var.associate_public_ip ? aws_instance.this.public_ip : null
}

output "tailscale_hostname" {
  description = "Tailscale machine name of the node (its MagicDNS short name)."
  value       = var.hostname
}

output "tailscale_fqdn" {
  description = "MagicDNS name of the node, when tailnet_dns_suffix is set."
  value       = var.tailnet_dns_suffix == null ? null : "${var.hostname}.${var.tailnet_dns_suffix}"
}

output "tailscale_tags" {
  description = "ACL tags the node joins with."
  value       = var.tailscale_tags
}

output "ami_id" {
  description = "AMI the instance was launched from."
  value       = aws_instance.this.ami
}

output "security_group_id" {
  description = "Security group of the node."
  value       = aws_security_group.node.id
}

output "vpc_id" {
  description = "VPC of the node (created or given)."
  value       = local.vpc_id
}

output "subnet_id" {
  description = "Subnet of the node (created or given)."
  value       = local.subnet_id
}

output "iam_role_name" {
  description = "Name of the node's IAM role, to attach more policies from outside."
  value       = aws_iam_role.node.name
}
