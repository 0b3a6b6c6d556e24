-- What a user may do beyond buying and selling. `admin` may create products. Granted and
-- taken away with `sneakerstop admin grant|revoke <email>` (never through the API); a
-- change ends the user's sessions, so no token states a role the user no longer has.
ALTER TABLE users ADD COLUMN role text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin'));
