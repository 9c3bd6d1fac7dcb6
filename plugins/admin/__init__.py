"""Admin: the operator's dashboard at ``/admin`` and the API behind it (``/api/admin``).

Users (search, sort, pages; one user's sessions, streams, files, games, chips; ban, role,
password reset, token revocation, stream keys), live figures of every node and their history,
the activity log with exports, and notifications with alerts and webhooks. It imports no
other plugin: it reads what they report through ``ctx.oversight`` and the bus, and the page
calls their own admin routes (end a stream, a call or a game; delete content; adjust chips).

Realtime (admins only): ``admin:stats`` (each node's figures), ``admin:notifications``,
``admin:activity`` (audit records as they are written).
"""

from __future__ import annotations

from syncstream.sdk import Event, Namespace, Plugin, PluginContext

from .activity import register_activity
from .alerts import Notifier
from .analytics import Sample, Sampler
from .config import Config
from .extensions import register_extensions
from .page import register_page
from .routes import register_dashboard
from .schema import MIGRATIONS
from .users import register_users
from .webhooks import Webhooks


async def setup(ctx: PluginContext) -> None:
    config: Config = ctx.config
    webhooks = Webhooks(config.webhooks)
    notifier = Notifier(ctx.store, ctx.gateway, ctx.bus, config.alerts, webhooks)
    latest: dict[str, Sample] = {}  # node -> its latest figures (from the bus)

    async def deliver(sample: Sample) -> None:
        await ctx.gateway.publish("admin:stats", {"type": "stats", **sample}, ephemeral=True)
        await ctx.bus.fire("admin.sample", sample)
        await notifier.check(sample)

    def on_sample(event: Event) -> None:
        latest[event.data["node"]] = dict(event.data)

    async def on_audit(event: Event) -> None:
        if event.origin == ctx.bus.node_id:
            record = {"type": "activity", "action": event.type.removeprefix("audit."),
                      "time": event.time, **event.data}  # fmt: skip
            await ctx.gateway.publish("admin:activity", record, ephemeral=True)

    ctx.gateway.register(
        Namespace(
            "admin",
            can_subscribe=lambda user, topic: user.is_admin,
            can_publish=lambda user, topic: False,
        )
    )
    register_users(ctx.api, ctx.auth, ctx.audit, ctx.oversight)
    register_activity(ctx.api, ctx.auth, ctx.audit)
    register_dashboard(ctx.api, ctx.store, notifier, latest)
    register_page(ctx.app.router)
    register_extensions(ctx.api, ctx.app.router, ctx.plugins)
    ctx.listen("admin.sample", on_sample)
    ctx.listen("audit.**", on_audit)
    sampler = Sampler(ctx.bus.node_id, ctx.metrics, ctx.oversight, ctx.settings.data_dir,
                      ctx.store, config.sample_seconds, deliver)  # fmt: skip
    ctx.on_cleanup(webhooks.close)
    ctx.on_cleanup(notifier.close)
    ctx.background(sampler.run())
    ctx.announce("Dashboard", "{url}/admin  (admins sign in there)")


plugin = Plugin(setup=setup, config=Config, migrations=MIGRATIONS)
