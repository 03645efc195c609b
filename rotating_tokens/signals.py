"""Signals a project can listen to, for example to alert on stolen tokens.

Every signal is sent with ``sender=TokenFamily`` after the change it reports is saved.
"""

from __future__ import annotations

from django.dispatch import Signal

# A login started a new family.
# Arguments: family (TokenFamily), user, token (the first RefreshToken).
tokens_issued = Signal()

# A login came from a device none of the user's sessions was used from within
# NEW_DEVICE_WINDOW (notices.py says what a device is). Sent after the family is saved.
# Arguments: family, user, device (a description for people: "Chrome 131 on Linux"),
# ip_address, user_agent, first_login (True: the user has no other session on record,
# so there was nothing to compare with; no e-mail is sent for it).
new_device_login = Signal()

# A refresh token was used and a new one issued in its place.
# Arguments: family, user, token (the new RefreshToken), previous (the used one).
token_rotated = Signal()

# A refresh token was presented again after it had been used, outside the grace
# rules: it was stolen or replayed. The family is already revoked. Sent once per family,
# by the request that revoked it (every attempt is still logged).
# Arguments: family, user, token (the reused RefreshToken; None for a simplejwt token
# converted by legacy.py and presented again), ip_address, user_agent.
token_reuse_detected = Signal()

# A family was revoked: its refresh tokens and its access tokens stop working.
# Arguments: family, reason (a RevokeReason value).
family_revoked = Signal()

# A request with a token bound to a DPoP key came without a valid proof by that key
# (a stolen token, most likely). Nothing was changed.
# Arguments: family, user, reason (a short code: "missing", "jkt", or dpop.REASONS),
# ip_address, user_agent.
dpop_proof_rejected = Signal()
