"""The media plugin's error codes: code, HTTP statuses (none: not an HTTP answer),
meaning. Listed in docs/api/errors.md."""

from __future__ import annotations

from syncstream.sdk import ErrorCode

CODES: tuple[ErrorCode, ...] = (
    ErrorCode("canceled", (), "a failed job's error_code: the job was cancelled"),
    ErrorCode("corrupt_media", (), "a failed job's error_code: a video stream has no picture size"),
    ErrorCode(
        "duration_unknown",
        (),
        "a failed job's error_code: a contact sheet needs the video's duration",
    ),
    ErrorCode("empty_input", (422,), "the input file is empty"),
    ErrorCode(
        "ffmpeg_failed",
        (),
        "a failed job's error_code: FFmpeg exited with an error (the reason is its last line)",
    ),
    ErrorCode(
        "format_unsupported",
        (),
        "a failed job's error_code: the input's format is not on the demuxer allow-list",
    ),
    ErrorCode("input_too_large", (413,), "inputs may be at most … bytes"),
    ErrorCode("job_finished", (409,), "the job is already done, failed or cancelled"),
    ErrorCode("job_not_found", (404,), "no job …"),
    ErrorCode("job_not_retryable", (409,), "only a failed or cancelled job can be retried"),
    ErrorCode("job_unfinished", (409,), "cancel the job first"),
    ErrorCode("media_too_large", (), "a failed job's error_code: a picture is over max_pixels"),
    ErrorCode("no_audio", (), "a failed job's error_code: the input has no audio stream"),
    ErrorCode(
        "no_media_streams",
        (),
        "a failed job's error_code: the input has no stream the operation can use",
    ),
    ErrorCode("no_output", (500,), "FFmpeg produced no output (the job fails with it too)"),
    ErrorCode("no_video", (), "a failed job's error_code: the input has no video stream"),
    ErrorCode(
        "not_media", (), "a failed job's error_code: the input is not a media file FFmpeg can read"
    ),
    ErrorCode("not_mp4", (), "a failed job's error_code: faststart applies to MP4 and MOV files"),
    ErrorCode("operation_required", (422,), "send an operation or a preset"),
    ErrorCode(
        "operation_unsupported",
        (),
        "a failed job's error_code: the operation has no FFmpeg command",
    ),
    ErrorCode("package_not_found", (404,), "no such package"),
    ErrorCode(
        "probe_failed", (), "a failed job's error_code: reading the input's media facts failed"
    ),
    ErrorCode(
        "timeout", (), "a failed job's error_code: the job ran out of time (the worker was killed)"
    ),
    ErrorCode("too_many_jobs", (429,), "you have … unfinished jobs (limit …)"),
    ErrorCode(
        "trim_out_of_range",
        (),
        "a failed job's error_code: the trim starts past the end of the input",
    ),
    ErrorCode("unknown_preset", (422,), "no preset … (known: …)"),
)
