-- The last TOTP time step accepted per user, so a code cannot be replayed within its window
-- (RFC 6238 section 5.2).
ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
