"""Homomorphic jobs' public keys: the key custodian's Paillier keys registered in the domain."""

from __future__ import annotations

from flask import Blueprint

from sandbox.api.routing import ANY_ROLE, endpoint
from sandbox.api.schemas import HEKeyList, HEKeyOut
from sandbox.db import read_session
from sandbox.service import he_keys
from sandbox.service.auth import Principal


def register(bp: Blueprint) -> None:
    @endpoint(
        bp,
        "/he/keys",
        "GET",
        summary="Paillier public keys providers may encrypt columns under (the key custodian's)",
        roles=ANY_ROLE,
        response=HEKeyList,
        errors=(401,),
    )
    def list_he_keys(caller: Principal) -> HEKeyList:
        rows = he_keys.all_keys(read_session())
        return HEKeyList(items=[HEKeyOut(fingerprint=r.fingerprint, n=r.n, bits=r.bits, created_at=r.created_at) for r in rows])
