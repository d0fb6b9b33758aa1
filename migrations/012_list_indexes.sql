-- Placeholder so that this branch's migration 013 applies on its own: branch
-- lists owns migration 012 under this name. On merge, take lists' file.
SELECT 1;
