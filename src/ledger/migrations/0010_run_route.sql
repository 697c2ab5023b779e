-- The route that chose a run's worker: a [[routing.rules]] name, or 'default' for the chains at
-- the top of [routing]. NULL for runs outside the queue (`oxi run`) and runs before routing.
ALTER TABLE runs ADD COLUMN route TEXT;
