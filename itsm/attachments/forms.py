"""The file field of the ticket and comment forms: several files, each checked before anything is saved."""

from __future__ import annotations

import os

from flask import current_app
from flask_wtf.file import MultipleFileField
from wtforms.validators import ValidationError

from itsm.attachments.names import clean_name

MAX_FILES = 20  # per form: a form is not a bulk import


def megabytes(size: int) -> str:
    return f"{size / 1048576:.1f} MiB" if size < 10 * 1048576 else f"{size / 1048576:.0f} MiB"


def stream_size(upload) -> int:
    stream = upload.stream
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def check_files(form, field) -> None:
    files = field.data or []
    if len(files) > MAX_FILES:
        raise ValidationError(f"Attach at most {MAX_FILES} files at a time ({len(files)} were chosen).")
    limit = current_app.config["ATTACHMENT_MAX_MB"] * 1048576
    problems = []
    field.over_limit = False
    for upload in files:
        size, name = stream_size(upload), clean_name(upload.filename)
        if size == 0:
            problems.append(f"{name} is empty (0 bytes): there is nothing to attach.")
        elif size > limit:
            field.over_limit = True
            problems.append(f"{name} is {megabytes(size)}; a file may be at most "
                            f"{current_app.config['ATTACHMENT_MAX_MB']} MiB.")
    if problems:
        field.errors[:] = []
        raise ValidationError(" ".join(problems) + " Nothing was saved.")


class AttachmentsField(MultipleFileField):
    """Zero or more files; ``data`` is the list of uploads (FileStorage) that carry a name. After
    validation ``over_limit`` says whether a file was too large (non-form clients get a 413 for it)."""

    over_limit = False

    def __init__(self, label: str = "Attach files", **kwargs):
        super().__init__(label, validators=[check_files], **kwargs)

    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        self.data = [upload for upload in (self.data or []) if getattr(upload, "filename", None)]
