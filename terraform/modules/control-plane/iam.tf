# Least privilege: the node's role has no permissions unless enable_ssm adds
# the SSM agent's managed policy. Nothing on the node calls AWS APIs: the
# Tailscale key arrives in user data and NixOS fetches the flake over HTTPS.

resource "aws_iam_role" "node" {
  name_prefix = "${var.name}-"
  description = "ducksnest control plane instance role"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "EC2AssumeRole"
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "ec2.amazonaws.com" }
    }]
  })

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count = var.enable_ssm ? 1 : 0

  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${var.name}-"
  role        = aws_iam_role.node.name

  tags = local.tags
}

data "aws_partition" "current" {}
