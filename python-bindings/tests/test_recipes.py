"""Each recipe of RECIPES.md, checked against a reference computed on a
plain bytes copy of the same key."""
import base64
import binascii
import ctypes
import hashlib
import hmac
import io
import os
import socket
import struct
import zlib

import numpy as np
import pytest

import zeroize
from zeroize import SecureBuffer

KEY = bytes(range(1, 33))
MESSAGE = b"attack at dawn"


@pytest.fixture
def key():
    sb = SecureBuffer(KEY)
    yield sb
    sb.close()               # also proves no consumer kept an export


def test_recv_into(key):
    a, b = socket.socketpair()
    with a, b:
        a.sendall(KEY[:10])
        a.sendall(KEY[10:])
        dest = SecureBuffer(32)
        with memoryview(dest) as view:
            got = 0
            while got < 32:
                got += b.recv_into(view[got:])
        assert dest == KEY
        dest.close()


def test_readinto_unbuffered_file_and_bytesio(tmp_path, key):
    p = tmp_path / "key.bin"
    p.write_bytes(KEY)
    dest = SecureBuffer(32)
    with open(p, "rb", buffering=0) as f:
        assert f.readinto(dest) == 32
    assert dest == key
    zeroize.zeroize1(dest)
    assert io.BytesIO(KEY).readinto(dest) == 32
    assert dest == key
    dest.close()


def test_os_readv(key):
    r, w = os.pipe()
    try:
        os.write(w, KEY)
        dest = SecureBuffer(32)
        assert os.readv(r, [dest]) == 32
        assert dest == key
        dest.close()
    finally:
        os.close(r)
        os.close(w)


def test_hashlib(key):
    assert hashlib.sha256(key).digest() == hashlib.sha256(KEY).digest()
    h = hashlib.sha256()
    h.update(key)
    assert h.digest() == hashlib.sha256(KEY).digest()
    assert hashlib.blake2b(MESSAGE, key=key, digest_size=32).digest() == \
        hashlib.blake2b(MESSAGE, key=KEY, digest_size=32).digest()
    assert hashlib.blake2s(MESSAGE, key=key).digest() == hashlib.blake2s(MESSAGE, key=KEY).digest()


def test_pbkdf2_and_scrypt(key):
    assert hashlib.pbkdf2_hmac("sha256", key, b"salt", 1000) == \
        hashlib.pbkdf2_hmac("sha256", KEY, b"salt", 1000)
    assert hashlib.scrypt(key, salt=b"salt", n=1024, r=8, p=1) == \
        hashlib.scrypt(KEY, salt=b"salt", n=1024, r=8, p=1)
    derived = hashlib.pbkdf2_hmac("sha256", key, b"salt", 1000)
    dk = SecureBuffer(derived)
    del derived
    assert len(dk) == 32
    dk.close()


def test_hmac(key):
    tag = hmac.digest(key, MESSAGE, "sha256")
    assert tag == hmac.new(KEY, MESSAGE, "sha256").digest()
    assert hmac.compare_digest(key, KEY)
    assert not hmac.compare_digest(key, bytes(32))
    assert key == KEY
    with pytest.raises(TypeError, match="bytes or bytearray"):
        hmac.new(key, MESSAGE, "sha256")          # the documented limitation


def test_struct_in_place(key):
    (value,) = struct.unpack_from("<Q", key, 0)
    assert value == struct.unpack("<Q", KEY[:8])[0]
    struct.pack_into("<Q", key, 0, value + 1)
    assert struct.unpack_from("<Q", key, 0)[0] == value + 1


def test_base64_binascii_zlib(key):
    assert base64.b64encode(key) == base64.b64encode(KEY)
    assert binascii.hexlify(key) == binascii.hexlify(KEY)
    assert zlib.crc32(key) == zlib.crc32(KEY)
    assert zlib.decompress(zlib.compress(key)) == KEY


def test_ctypes_from_buffer(key):
    c_view = (ctypes.c_char * len(key)).from_buffer(key)
    assert ctypes.addressof(c_view) != 0
    ctypes.memset(c_view, 0x41, 4)                # C writes land in the SecureBuffer
    assert key[:4] == b"AAAA"
    with pytest.raises(BufferError):
        key.close()
    del c_view


def test_numpy_in_place(key):
    words = np.frombuffer(key, dtype=np.uint32)
    mask = np.full(8, 0xFFFFFFFF, dtype=np.uint32)
    np.bitwise_xor(words, mask, out=words)
    assert key == bytes(b ^ 0xFF for b in KEY)
    del words
    arr = np.arange(10.0)
    zeroize.zeroize1(arr)
    assert not arr.any()


crypto = pytest.importorskip("cryptography")


def test_cryptography_hmac_aesgcm_hkdf(key):
    from cryptography.hazmat.primitives import hashes, hmac as chmac
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    h = chmac.HMAC(key, hashes.SHA256())
    h.update(MESSAGE)
    assert h.finalize() == hmac.digest(KEY, MESSAGE, "sha256")

    nonce = b"\x01" * 12
    aead = AESGCM(key)
    ct = aead.encrypt(nonce, MESSAGE, b"ad")
    assert AESGCM(KEY).decrypt(nonce, ct, b"ad") == MESSAGE

    okm = HKDF(hashes.SHA256(), 32, b"salt", b"info").derive(key)
    assert okm == HKDF(hashes.SHA256(), 32, b"salt", b"info").derive(KEY)
    del aead


def test_cryptography_decrypt_into_secure_memory(key):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    nonce = b"\x02" * 12
    enc = Cipher(algorithms.AES(KEY), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(b"ad")
    ciphertext = enc.update(MESSAGE) + enc.finalize()
    tag = enc.tag

    plain = SecureBuffer(len(ciphertext) + 15)
    dec = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(b"ad")
    n = dec.update_into(ciphertext, plain)
    dec.finalize()
    with memoryview(plain)[:n] as secret:
        assert secret == MESSAGE
    plain.close()


def test_aesgcm_after_close_raises_not_crashes():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    k = SecureBuffer(KEY)
    aead = AESGCM(k)
    k.close()
    with pytest.raises(ValueError):
        aead.encrypt(b"\x00" * 12, b"x", None)


ED25519_CHILD = r'''
import gc, os, sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
import zeroize
seed = zeroize.SecureBuffer.random(32)
os.write(1, seed)                                   # in place: no copy in this process
def step(name):
    os.write(1, name.encode().ljust(16))
    sys.stdin.readline()
step("seed")
key = Ed25519PrivateKey.from_private_bytes(seed)
key.sign(b"message")
step("loaded")
if sys.argv[1] == "raw":
    raw = key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
    step("raw")
    del raw; gc.collect()
    step("raw deleted")
del key; gc.collect()
step("key deleted")
seed.close()
step("seed closed")
'''


def ed25519_copy_counts(variant):
    """Runs ED25519_CHILD and scans its memory after each step: {step: copies}."""
    import subprocess
    import sys
    from test_memory import scan_process
    proc = subprocess.Popen([sys.executable, "-c", ED25519_CHILD, variant], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        needle = proc.stdout.read(32)
        counts = {}
        while True:
            name = proc.stdout.read(16)
            if not name:
                break
            counts[name.decode().strip()] = scan_process(proc.pid, needle)
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
        return counts
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ed25519_copies_as_documented():
    """The figures of RECIPES.md's Ed25519 section: from_private_bytes keeps
    one copy while the key lives (wiped when it is freed); private_bytes(Raw)
    adds three that survive del and close(); without it nothing is left."""
    raw = ed25519_copy_counts("raw")
    assert raw == {"seed": 1, "loaded": 2, "raw": 5, "raw deleted": 5, "key deleted": 4,
                   "seed closed": 3}, raw
    least = ed25519_copy_counts("least")
    assert least == {"seed": 1, "loaded": 2, "key deleted": 1, "seed closed": 0}, least
