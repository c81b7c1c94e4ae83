"""``Renderer``: an ``AlertGroup`` → message bodies that fit their channel's byte limit.

A Renderer owns one Jinja environment and its compiled templates (no global
caches, so tests and config reloads get fresh state). Rendering is a pure
function of (group, template, language, msgtype, channel, now, ref, ack,
mentions): the dispatcher may re-render after a crash and must get
byte-identical parts.

Mentions (``<@userid>`` for robot markdown) go into the template context as
``mentions``. A template that never names ``mentions`` — like the built-in
ones — gets them from the renderer instead: a final line of the mentions
joined by spaces, on the **last** part only. Its bytes are reserved in every part while
splitting (the last part is not known until packing ends), so no part ever
exceeds the limit, and the line is never cut by truncation. A template that
does name ``mentions`` (itself or in a template it extends, includes or
imports) places them itself, on whichever parts it chooses, and its output
is measured like any other text.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import meta, nodes

from alertbridge.errors import TemplateError
from alertbridge.message import RenderedMessage
from alertbridge.messengers.registry import BYTE_LIMITS
from alertbridge.model import Ack, Alert, AlertGroup
from alertbridge.render.digest import DIGEST_TEMPLATE, DigestPart, DigestSection, digest_context
from alertbridge.render.environment import build_environment, template_loaders
from alertbridge.render.replies import NO_REPLIES, Replies
from alertbridge.render.sample import sample_group
from alertbridge.render.sanitize import clean_group, clean_text
from alertbridge.render.split import split_into_parts, split_with_items, utf8_len

log = logging.getLogger(__name__)

# Shown where an alert too big for a message of its own was cut.
TRUNCATION_MARKERS: dict[str, str] = {"zh": "\n…（已截断）", "en": "\n… (truncated)"}

# check() renders at a fixed instant so its outcome never depends on the clock.
_CHECK_NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

# What a template's own code can raise on unexpected data (a filter given the
# wrong type, a division by zero, a missing key …), besides Jinja's errors.
_RENDER_ERRORS = (
    jinja2.TemplateError,
    TypeError,
    ValueError,
    LookupError,
    ArithmeticError,
    AttributeError,
)

_Numbered = tuple[int, Alert]

# The mention line the renderer appends takes at most this share of a
# message's bytes; mentions past it are left out (logged), the alerts matter more.
MENTION_LINE_SHARE = 4


class Renderer:
    """Compiles templates on first use and renders groups into size-safe messages."""

    def __init__(
        self,
        *,
        timezone: ZoneInfo,
        templates_dir: Path | None = None,
        byte_limits: Mapping[tuple[str, str], int] = BYTE_LIMITS,
    ) -> None:
        """``byte_limits``: (channel kind, msgtype) -> most UTF-8 bytes of a
        message, every messenger's (``Messengers.byte_limits``); by default the
        built-in messengers'."""
        self._tz = timezone
        self._limits = dict(byte_limits)
        self._loaders = template_loaders(templates_dir)
        self._env = build_environment(self._loaders, timezone)
        self._compiled: dict[tuple[str, str, str], jinja2.Template] = {}
        self._mention_aware: dict[str, bool] = {}

    def check(self, template: str, language: str, msgtype: str, digest_msgtype: str | None = None) -> None:
        """Compile the template and render the sample group once per channel that
        could use it, and a digest of it (``digest.*.j2``) in the same language
        and ``digest_msgtype`` (by default ``msgtype``: cards and articles digest as markdown).

        Raises:
            TemplateError: naming the file (and line, when known).
        """
        group = sample_group(_CHECK_NOW)
        for channel in sorted({c for c, m in self._limits if m == msgtype}):
            self.render(
                group,
                template=template,
                language=language,
                msgtype=msgtype,
                channel=channel,
                now=_CHECK_NOW,
                ref=27,
                ack=Ack(user="zhangsan", at=_CHECK_NOW),
                mentions=("<@zhangsan>",) if channel == "robot" else (),
            )
            # Under a rate limit the same receiver sends digests: check those too.
            self.render_digest(
                [DigestSection(ref=27, group=group, ack=Ack(user="zhangsan", at=_CHECK_NOW))],
                language=language,
                msgtype=digest_msgtype or msgtype,
                channel=channel,
                now=_CHECK_NOW,
                replies=Replies(ack=True, silence=True),  # the branch with reply hints
            )

    def render(
        self,
        group: AlertGroup,
        *,
        template: str,
        language: str,
        msgtype: str,
        channel: str,
        now: datetime,
        ref: int | None = None,
        ack: Ack | None = None,
        mentions: Sequence[str] = (),
        replies: Replies = NO_REPLIES,
    ) -> list[RenderedMessage]:
        """Render ``group`` into one message, or several split between alerts.

        ``ref`` is the group's reference (``#27``) users answer with; ``ack``
        who acknowledged it, shown on every later message of the group.
        ``mentions`` are ready-made mention strings (``<@zhangsan>``); see the
        module docstring for where they end up. ``replies`` says what its
        readers can answer (``alertbridge.render.replies``): templates offer
        reply hints, or a silence link instead, accordingly.

        Every message is within its ``(channel, msgtype)`` byte limit; every alert
        appears in exactly one of them.

        Raises:
            TemplateError: the template is missing, does not compile, fails to
                render (e.g. an undefined variable) or renders nothing.
            ValueError: ``now`` is naive, or the channel has no such msgtype.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if (channel, msgtype) not in self._limits:
            raise ValueError(f"channel {channel!r} cannot send msgtype {msgtype!r}")
        limit = self._limits[(channel, msgtype)]
        compiled = self._template(template, language, msgtype)
        mentions = tuple(mentions)
        tail = "" if not mentions or self._names_mentions(compiled) else _mention_line(mentions, limit)
        group = clean_group(group)
        ordered = (*group.firing, *group.resolved)

        def render_part(numbered: Sequence[_Numbered], part: int, parts: int) -> str:
            context = {
                "group": group,
                "alerts": [alert for _, alert in numbered],
                # Index of this part's first alert in the whole group, so
                # numbering continues across parts.
                "offset": numbered[0][0] if numbered else 0,
                "part": part,
                "parts": parts,
                "language": language,
                "now": now,
                "tz": self._tz,
                "channel": channel,
                "ref": ref,
                "ack": ack,
                "mentions": mentions,
                "replies": replies,
            }
            return self._render_one(compiled, context)

        marker = TRUNCATION_MARKERS.get(language, TRUNCATION_MARKERS["en"])
        contents = split_into_parts(list(enumerate(ordered)), render_part, limit - utf8_len(tail), marker)
        contents[-1] += tail
        return [
            RenderedMessage(msgtype=msgtype, content=content, limit=limit, part=number, parts=len(contents))
            for number, content in enumerate(contents, 1)
        ]

    def render_digest(
        self,
        sections: Sequence[DigestSection],
        *,
        language: str,
        msgtype: str,
        channel: str,
        now: datetime,
        mentions: Sequence[str] = (),
        replies: Replies = NO_REPLIES,
    ) -> list[DigestPart]:
        """Several groups in as few messages as fit: one line per alert.

        The dispatcher sends digests when a recipient's backlog outgrows its
        WeCom rate budget. Each part says which sections it finished, so a
        crash after part 2 of 5 re-sends only what parts 1–2 did not cover.

        Raises:
            TemplateError: as ``render``, for ``digest.*.j2``.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        limit = self._limits[(channel, msgtype)]
        compiled = self._template(DIGEST_TEMPLATE, language, msgtype)
        mentions = tuple(mentions)
        tail = "" if not mentions or self._names_mentions(compiled) else _mention_line(mentions, limit)
        sections = [replace(section, group=clean_group(section.group)) for section in sections]
        items = [
            (index, alert)
            for index, section in enumerate(sections)
            for alert in (*section.group.firing, *section.group.resolved)
        ]

        def render_part(chunk: Sequence[_Numbered], part: int, parts: int) -> str:
            context = digest_context(sections, chunk, part=part, parts=parts)
            context.update(
                language=language, now=now, tz=self._tz, channel=channel, mentions=mentions, replies=replies
            )
            return self._render_one(compiled, context)

        marker = TRUNCATION_MARKERS.get(language, TRUNCATION_MARKERS["en"])
        packed = split_with_items(items, render_part, limit - utf8_len(tail), marker)
        last_item = {index: position for position, (index, _) in enumerate(items)}
        # A section with no alerts has nothing to wait for: the first part finishes it.
        done_at_part: dict[int, list[int]] = {0: [i for i in range(len(sections)) if i not in last_item]}
        position = 0
        for number, (chunk, _) in enumerate(packed):
            position += len(chunk)
            for index, last in last_item.items():
                if position - len(chunk) <= last < position:
                    done_at_part.setdefault(number, []).append(index)
        parts: list[DigestPart] = []
        for number, (_, content) in enumerate(packed):
            if number == len(packed) - 1:
                content += tail
            done = tuple(sections[index].ref for index in done_at_part.get(number, ()))
            message = RenderedMessage(
                msgtype=msgtype, content=content, limit=limit, part=number + 1, parts=len(packed)
            )
            parts.append(DigestPart(message=message, refs_done=done))
        return parts

    def _template(self, name: str, language: str, msgtype: str) -> jinja2.Template:
        key = (name, language, msgtype)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._load(name, language, msgtype)
        return compiled

    def _names_mentions(self, compiled: jinja2.Template) -> bool:
        """Does the template (or one it extends, includes or imports) read ``mentions``?"""
        name = compiled.name or ""
        known = self._mention_aware.get(name)
        if known is None:
            known = self._mention_aware[name] = self._reads_mentions(name)
        return known

    def _reads_mentions(self, name: str) -> bool:
        pending, seen = [name], set()
        while pending:
            current = pending.pop()
            if current in seen or self._env.loader is None:
                continue
            seen.add(current)
            try:
                source, _, _ = self._env.loader.get_source(self._env, current)
                tree = self._env.parse(source)
            except (jinja2.TemplateNotFound, jinja2.TemplateSyntaxError):
                continue  # rendering reports it
            if any(node.name == "mentions" and node.ctx == "load" for node in tree.find_all(nodes.Name)):
                return True
            pending.extend(ref for ref in meta.find_referenced_templates(tree) if ref is not None)
        return False

    def _load(self, name: str, language: str, msgtype: str) -> jinja2.Template:
        """``{name}.{language}.{msgtype}.j2``, else ``{name}.{msgtype}.j2``.

        Directories are searched in order and both names are tried in each
        before the next, so an operator's generic ``default.markdown.j2``
        overrides the built-in language-specific files too.
        """
        candidates = (f"{name}.{language}.{msgtype}.j2", f"{name}.{msgtype}.j2")
        for loader in self._loaders:
            for candidate in candidates:
                if not self._provides(loader, candidate):
                    continue
                try:
                    return self._env.get_template(candidate)
                except jinja2.TemplateSyntaxError as exc:
                    raise _syntax_error(exc, candidate) from None
        where = ", ".join(str(p) for p in self._search_paths()) or "no template directory"
        raise TemplateError(candidates[0], f"not found (nor {candidates[1]}) in {where}")

    def _provides(self, loader: jinja2.BaseLoader, name: str) -> bool:
        try:
            loader.get_source(self._env, name)
        except jinja2.TemplateNotFound:
            return False
        return True

    def _search_paths(self) -> list[Path]:
        return [
            Path(path)
            for loader in self._loaders
            if isinstance(loader, jinja2.FileSystemLoader)
            for path in loader.searchpath
        ]

    def _render_one(self, compiled: jinja2.Template, context: dict[str, object]) -> str:
        name = compiled.filename or compiled.name or "<template>"
        try:
            text = compiled.render(context)
        except jinja2.TemplateSyntaxError as exc:  # in an imported/included file
            raise _syntax_error(exc, name) from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(name, f"imports or includes {exc.name!r}, which was not found") from None
        except _RENDER_ERRORS as exc:
            where, lineno = self._locate(exc, name)
            problem = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
            raise TemplateError(where, problem, lineno) from None
        # What the template added itself (the group is clean already).
        text = clean_text(_valid_utf8(text.strip()))
        if not text:
            raise TemplateError(name, "rendered an empty message (WeCom rejects empty content)")
        return text

    def _locate(self, exc: BaseException, fallback: str) -> tuple[str, int | None]:
        """The innermost template frame of ``exc``: Jinja rewrites tracebacks to template lines."""
        roots = [p.resolve() for p in self._search_paths()]
        found: tuple[str, int | None] = (fallback, None)
        for frame in traceback.extract_tb(exc.__traceback__):
            path = Path(frame.filename).resolve()
            if any(path.is_relative_to(root) for root in roots):
                found = (frame.filename, frame.lineno)
        return found


def _mention_line(mentions: Sequence[str], limit: int) -> str:
    """A newline then ``<@a> <@b>``: as many mentions as fit in ``limit // MENTION_LINE_SHARE`` bytes."""
    budget = limit // MENTION_LINE_SHARE
    line = ""
    for index, mention in enumerate(mentions):
        longer = f"{line} {mention}" if line else f"\n{mention}"
        if utf8_len(longer) > budget:
            log.warning("mentions_left_out kept=%d dropped=%d", index, len(mentions) - index)
            break
        line = longer
    return line


def _syntax_error(exc: jinja2.TemplateSyntaxError, fallback: str) -> TemplateError:
    return TemplateError(exc.filename or exc.name or fallback, exc.message or "syntax error", exc.lineno)


def _valid_utf8(text: str) -> str:
    """Replace lone surrogates (from ``\\ud800`` JSON escapes) so the text is encodable at all."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
