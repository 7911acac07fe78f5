"""A real password hasher that counts its work, to prove a refused log-in hashes nothing."""

from django.contrib.auth.hashers import MD5PasswordHasher


class CountingHasher(MD5PasswordHasher):
    """MD5 (the suite's fast hasher) that counts every hash it computes: set_password,
    check_password, and the dummy hash Django runs for an unknown username."""

    algorithm = "counting_md5"
    hashes = 0

    def encode(self, password: str, salt: str) -> str:
        CountingHasher.hashes += 1
        return super().encode(password, salt)
