"""The files plugin's error codes: code, HTTP statuses (none: not an HTTP answer),
meaning. Listed in docs/api/errors.md."""

from __future__ import annotations

from syncstream.sdk import ErrorCode

CODES: tuple[ErrorCode, ...] = (
    ErrorCode("body_incomplete", (400,), "the body was cut off: …"),
    ErrorCode("checksum_algorithm_unsupported", (400,), "unsupported checksum algorithm … (use …)"),
    ErrorCode("checksum_mismatch", (460,), "the body does not match Upload-Checksum"),
    ErrorCode("file_not_found", (404,), "no file or folder …"),
    ErrorCode("file_too_large", (413,), "files may be at most … bytes"),
    ErrorCode("folder_not_found", (404,), "no folder …"),
    ErrorCode("folder_trashed", (409,), "this folder is in the trash"),
    ErrorCode("in_trash", (409,), "restore this item first"),
    ErrorCode("invalid_checksum", (400,), "Upload-Checksum is not base64"),
    ErrorCode("invalid_cursor", (422,), "the cursor is not one this server gave"),
    ErrorCode("invalid_form", (422,), "the form has no 'file' part"),
    ErrorCode("invalid_metadata", (400,), "Upload-Metadata is over … bytes"),
    ErrorCode(
        "invalid_name",
        (422,),
        "the name is empty, too long or has separators, control or bidi characters",
    ),
    ErrorCode("invalid_upload_length", (), "Upload-Length is not a number"),
    ErrorCode("invalid_upload_offset", (), "Upload-Offset is not a number"),
    ErrorCode("length_ambiguous", (400,), "send Upload-Length or Upload-Defer-Length"),
    ErrorCode("length_below_offset", (409,), "the length is below the bytes received"),
    ErrorCode("length_fixed", (409,), "this upload's length is already set"),
    ErrorCode("link_exhausted", (410,), "this link's download limit is reached"),
    ErrorCode("link_expired", (410,), "this link has expired"),
    ErrorCode("link_not_found", (404,), "no such link, or it was revoked"),
    ErrorCode("link_password_required", (401,), "send the password as Link-Password"),
    ErrorCode(
        "media_too_large",
        (),
        "a file's meta.code: its pictures are over max_pixels or the worker's memory",
    ),
    ErrorCode("move_into_itself", (409,), "a folder cannot move into itself"),
    ErrorCode("name_taken", (409,), "the name is taken in that folder"),
    ErrorCode("not_a_file", (422,), "folders have no content; download their files"),
    ErrorCode("not_a_folder", (422,), "… is a file, not a folder"),
    ErrorCode("not_in_trash", (409,), "this item is not in the trash"),
    ErrorCode("not_trash_root", (409,), "restore the folder this item was trashed in"),
    ErrorCode("offset_mismatch", (409,), "Upload-Offset … does not match the upload's offset …"),
    ErrorCode("offset_required", (400,), "send Upload-Offset"),
    ErrorCode("owner_only", (403,), "only the owner may do this"),
    ErrorCode(
        "processing_failed", (), "a file's meta.code: reading its media facts or thumbnails failed"
    ),
    ErrorCode("quota_exceeded", (413,), "the body exceeds the size limit or your quota"),
    ErrorCode("range_not_satisfiable", (416,), "no requested range lies within the … bytes"),
    ErrorCode("share_not_found", (404,), "this item is not shared with that user"),
    ErrorCode("share_with_self", (422,), "you own this already"),
    ErrorCode("tus_version_unsupported", (412,), "send Tus-Resumable: …"),
    ErrorCode("unreadable_media", (), "a file's meta.code: it is not the media it appears to be"),
    ErrorCode("upload_complete", (409,), "a finished upload is a file: delete the file"),
    ErrorCode("upload_expired", (410,), "this upload expired; start a new one"),
    ErrorCode("upload_locked", (423,), "another request is writing to this upload"),
    ErrorCode("upload_not_found", (404,), "no upload …"),
    ErrorCode("upload_too_large", (413,), "the body goes past Upload-Length"),
)
