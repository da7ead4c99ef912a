"""Hypothesis strategies for protocol values, shared by the wire unit tests."""

from __future__ import annotations

from hypothesis import strategies as st

from portway.wire import messages as m

texts = st.text(max_size=12)
opt_texts = st.none() | texts
opt_bools = st.none() | st.booleans()

client_details = st.builds(
    m.ClientDetails,
    agent=opt_texts, channel=opt_texts, version=opt_texts, os=opt_texts, arch=opt_texts,
    token=opt_texts, protocol_version=opt_texts,
)
server_details = st.builds(
    m.ServerDetails,
    agent=opt_texts, channel=opt_texts, version=opt_texts, plan=opt_texts, provider=opt_texts,
    region=opt_texts, update=opt_texts,
)
