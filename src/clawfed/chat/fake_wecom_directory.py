"""The people and departments a local fake WeCom knows, read from a YAML file.

``clawfed chat fake-wecom --directory people.yaml`` answers ``user/get`` and
``department/list`` from this file, so roles that come from WeCom (a department's leader
is its head) can be tried without a real corporation::

    departments:
      10: 信贷部
      20: 合规部
    users:
      liuyang: {name: 刘洋, department: [10], is_leader_in_dept: [1]}
      zhaomin: {name: 赵敏, department: [10], position: 分析师}

``is_leader_in_dept`` pairs with ``department`` (one 0/1 flag per listed department, as
WeCom's ``user/get`` returns it); it may be left out (no leader anywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clawfed.core.errors import ConfigError
from clawfed.core.validation import describe_errors

#: WeCom user ids: letters, digits and ``_-.@`` (up to 64 characters).
_USERID = r"^[A-Za-z0-9_.@-]{1,64}$"
DepartmentId = Annotated[int, Field(ge=1, le=2**32 - 1)]


class _Person(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, Field(min_length=1, max_length=64)]
    department: list[DepartmentId] = Field(default_factory=list)
    is_leader_in_dept: list[Annotated[int, Field(ge=0, le=1)]] | None = None
    position: Annotated[str, Field(max_length=128)] = ""

    @model_validator(mode="after")
    def _flags_pair_with_departments(self) -> _Person:
        flags = self.is_leader_in_dept
        if flags is not None and len(flags) != len(self.department):
            raise ValueError(
                f"is_leader_in_dept has {len(flags)} flag(s) for {len(self.department)} "
                "department(s); give one 0/1 flag per department"
            )
        return self


class _Directory(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    departments: dict[DepartmentId, Annotated[str, Field(min_length=1, max_length=64)]]
    users: dict[Annotated[str, Field(pattern=_USERID)], _Person]

    @model_validator(mode="after")
    def _known_departments(self) -> _Directory:
        for userid, person in self.users.items():
            unknown = sorted(set(person.department) - set(self.departments))
            if unknown:
                raise ValueError(
                    f"user {userid!r} is in department(s) {unknown}, which departments: "
                    f"does not list (listed: {sorted(self.departments)})"
                )
        return self


@dataclass(frozen=True)
class Directory:
    """What a fake WeCom serves: department id -> name, and user id -> ``user/get`` profile."""

    departments: dict[int, str]
    profiles: dict[str, dict[str, Any]]


def load_directory(path: Path) -> Directory:
    """Read and check a directory file.

    Raises
    ------
    ConfigError
        If the file cannot be read, is not YAML, or does not describe departments and users
        as the module documents (the message names the file and the faulty entry).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the directory file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with departments: and users:")
    try:
        parsed = _Directory.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from exc
    profiles: dict[str, dict[str, Any]] = {}
    for userid, person in parsed.users.items():
        flags = person.is_leader_in_dept or [0] * len(person.department)
        profiles[userid] = {
            "name": person.name,
            "department": list(person.department),
            "is_leader_in_dept": list(flags),
            "position": person.position,
        }
    return Directory(dict(parsed.departments), profiles)
