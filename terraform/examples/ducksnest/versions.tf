terraform {
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

  # The state holds the (single-use) Tailscale auth key: keep it in an
  # encrypted, access-controlled backend, for example
  #
  # backend "s3" {
  #   bucket       = "ducksnest-tfstate"
  #   key          = "control-plane/terraform.tfstate"
  #   region       = "ap-northeast-2"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}
