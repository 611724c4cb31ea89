"""Request and response models of the tree routes (api/trees.py)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.trees.index import TreeSort


class TreeQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    path: str = Field("/", max_length=8192, description="a directory, from the volume's root")
    depth: int = Field(1, ge=0, le=10, description="levels of children to include")
    limit: int = Field(50, ge=1, le=1000, description="children per directory, largest first")
    sort: TreeSort = "disk_usage"


class LargestFilesQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: int = Field(20, ge=1, le=100)


class TreeChangesQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    limit: int = Field(20, ge=1, le=1000)


class OwnFiguresOut(BaseModel):
    apparent: int
    disk: int
    files: int


class OtherFiguresOut(BaseModel):
    apparent: int
    disk: int
    files: int
    dirs: int
    share: float


class TreeNodeOut(BaseModel):
    name: str = Field(description="escaped: bytes that are not UTF-8 as %XX, '%' as %25")
    path: str
    apparent: int = Field(description="apparent bytes of every file at or below it")
    disk: int = Field(description="disk bytes at or below it, as du -B1 -x prints for it")
    files: int
    dirs: int = Field(description="directories below it")
    share: float = Field(description="its disk usage as a share of the volume's")
    pruned: bool = Field(description="some subdirectories were too small to keep: see other")
    own: OwnFiguresOut = Field(description="its own files and blocks, no subdirectory")
    other: OtherFiguresOut | None = Field(description="the subdirectories not kept, summed")
    children_total: int = Field(description="kept subdirectories")
    children: list[TreeNodeOut] | None = Field(description="null past the requested depth")


class TreeScanOut(BaseModel):
    scan_id: str
    scanned_at: datetime


class TreeOut(BaseModel):
    volume_id: str
    scan_id: str
    scanned_at: datetime
    min_share: float
    node: TreeNodeOut


class LargestFileOut(BaseModel):
    path: str
    size: int
    disk_usage: int


class LargestFilesOut(BaseModel):
    volume_id: str
    scan_id: str
    scanned_at: datetime
    data: list[LargestFileOut]
    total: int = Field(description="largest files kept by the scan")


class TreeChangeOut(BaseModel):
    path: str
    before: int | None = Field(description="disk bytes in the previous tree; null: not in it")
    after: int | None = Field(description="disk bytes in the latest tree; null: not in it")
    delta: int


class TreeChangesOut(BaseModel):
    volume_id: str
    before: TreeScanOut | None = Field(description="null until a second native scan")
    after: TreeScanOut
    data: list[TreeChangeOut]
