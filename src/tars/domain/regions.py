REGIONS: tuple[str, ...] = ("us-west-2", "us-east-1", "eu-west-1", "ap-southeast-1")
