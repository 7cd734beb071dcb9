terraform {
  # 1.9: validation blocks that refer to other variables.
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0.0, < 7.0.0"
    }
    tailscale = {
      source  = "tailscale/tailscale"
      version = ">= 0.16.0"
    }
  }
}
