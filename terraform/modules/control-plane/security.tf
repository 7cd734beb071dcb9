# The node's only security group. Inbound: Tailscale's WireGuard port and
# nothing else (no SSH: administration goes over the tailnet, or SSM when
# enable_ssm is set). Outbound: what Tailscale, Nix and the flake fetch need.
# One resource per rule (aws_vpc_security_group_*_rule), never inline rules,
# so the rule set is exactly what this file lists.

resource "aws_security_group" "node" {
  name_prefix = "${var.name}-"
  description = "ducksnest control plane: inbound Tailscale UDP ${local.tailscale_port} only"
  vpc_id      = local.vpc_id

  tags = merge(local.tags, { Name = var.name })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "tailscale" {
  security_group_id = aws_security_group.node.id
  description       = "Tailscale WireGuard (direct connections)"
  ip_protocol       = "udp"
  from_port         = local.tailscale_port
  to_port           = local.tailscale_port
  cidr_ipv4         = "0.0.0.0/0"

  tags = merge(local.tags, { Name = "${var.name}-tailscale-udp" })
}

resource "aws_vpc_security_group_egress_rule" "this" {
  for_each = local.egress_rules

  security_group_id = aws_security_group.node.id
  description       = each.value.description
  ip_protocol       = each.value.protocol
  from_port         = each.value.from
  to_port           = each.value.to
  cidr_ipv4         = "0.0.0.0/0"

  tags = merge(local.tags, { Name = "${var.name}-egress-${each.key}" })
}
