"""The chat plugin's error codes: code, HTTP statuses (none: not an HTTP answer),
meaning. Listed in docs/api/errors.md."""

from __future__ import annotations

from syncstream.sdk import ErrorCode

CODES: tuple[ErrorCode, ...] = (
    ErrorCode("attachments_unavailable", (422,), "the files plugin is not enabled"),
    ErrorCode("banned", (403,), "you are banned from this room"),
    ErrorCode("blocked", (403,), "this user does not accept your messages"),
    ErrorCode("direct_room", (409,), "direct chats have exactly two members"),
    ErrorCode("direct_with_self", (422,), "a direct chat needs another user"),
    ErrorCode("empty_message", (422,), "a message needs text or an attachment"),
    ErrorCode("invalid_client_key", (422,), "client keys are 1-64 of A-Z a-z 0-9 _ . : -"),
    ErrorCode("invalid_message", (422,), "publish {text, client_key?, reply_to?, attachments?}"),
    ErrorCode("invalid_reaction", (422,), "a reaction is one emoji or short code"),
    ErrorCode("member_not_found", (404,), "that user is not a (non-owner) member"),
    ErrorCode("message_deleted", (409,), "a deleted message cannot be edited"),
    ErrorCode("message_not_found", (404,), "no message … in this room"),
    ErrorCode("message_too_long", (413,), "messages are at most … characters"),
    ErrorCode("muted", (403,), "you are muted in this room"),
    ErrorCode("not_a_group", (409,), "only group rooms have a name and visibility"),
    ErrorCode("not_a_member", (403,), "join the room first"),
    ErrorCode("not_your_message", (403,), "only the author may edit a message"),
    ErrorCode("room_full", (409,), "the room has … members, the most it may"),
    ErrorCode("room_not_created", (500,), "the room could not be made"),
    ErrorCode("room_not_found", (404,), "no room …"),
    ErrorCode("slow_mode", (429,), "slow mode: wait … s"),
    ErrorCode("too_many_attachments", (422,), "at most … files"),
)
