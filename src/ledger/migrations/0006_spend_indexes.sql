-- Fewer pages written per claim and settlement. Since 0005, admission reads `spend_rollup`, so
-- no query looks spend up by month, and none filters it by status; yet both indexes carried the
-- status, so settling a run moved its entries in both (about five pages written per settlement,
-- a fifth of the pages of a claim + settle, each one more WAL frame to write and checkpoint).
-- The report's spend per day still needs `day`: keep an index on it alone, which a settlement
-- does not touch.
DROP INDEX spend_by_month;
DROP INDEX spend_by_day;
CREATE INDEX spend_by_day ON spend (day);
