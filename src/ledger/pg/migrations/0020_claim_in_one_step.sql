-- 0020 (PostgreSQL twin of SQLite's 0020). Every claim and settle on every host waits for the
-- day's and the month's spend_rollup rows, and holds them to its commit: how long they are
-- held decides how many claims the fleet makes per second (docs/postgres.md, "Claim
-- throughput"). Held across round trips, they are held for as long as the network and the
-- client take; held inside one statement, for as long as the server takes.
--
-- 1. A settled or renewed reservation moves its rollup rows by the difference, in one UPDATE
--    (it took the old contribution off, then upserted the new one: twice the writes).

CREATE OR REPLACE FUNCTION spend_rollup_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.day = NEW.day AND OLD.month = NEW.month THEN
        UPDATE spend_rollup SET
            spent = spent + NEW.actual_microusd - OLD.actual_microusd,
            held = held + spend_held(NEW.status, NEW.reserved_microusd, NEW.actual_microusd)
                        - spend_held(OLD.status, OLD.reserved_microusd, OLD.actual_microusd)
        WHERE period IN (NEW.day, NEW.month);
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE spend_rollup SET
            spent = spent - OLD.actual_microusd,
            held = held - spend_held(OLD.status, OLD.reserved_microusd, OLD.actual_microusd)
        WHERE period IN (OLD.day, OLD.month);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO spend_rollup AS r (period, spent, held) VALUES
            (NEW.day, NEW.actual_microusd,
             spend_held(NEW.status, NEW.reserved_microusd, NEW.actual_microusd)),
            (NEW.month, NEW.actual_microusd,
             spend_held(NEW.status, NEW.reserved_microusd, NEW.actual_microusd))
        ON CONFLICT (period) DO UPDATE
            SET spent = r.spent + excluded.spent, held = r.held + excluded.held;
    END IF;
    RETURN NULL;
END $$;

-- 2. A claim of a task in one statement: the scheduler's claim, which it otherwise makes in a
--    transaction of a dozen statements (`Queries::admit_claim` and the writes around it). The
--    same rows, the same locks in the same order (the task row, then the rollup rows in key
--    order), and the rollup rows taken last, so they are held for the reservation's insert
--    and the commit only:
--      the candidate task row, FOR NO KEY UPDATE SKIP LOCKED: 'lost', nothing written, when
--        another claimer holds it or it left p_from;
--      the task's state change and attempt count, its task_state_changed event, the run row,
--        run_started, the task's unused over-estimate approval marked used by the run;
--      the day's and the month's rollup rows, created if missing, in key order, FOR UPDATE;
--      the caps: spent + held + p_reserve above either cap raises SQLSTATE OXCAP, which
--        undoes the statement, every write above included (the caller then records the
--        refusal in a write that checks the caps again: `PreparedRun::admit_task`);
--      else the reservation (the rollup trigger adds it): 'admitted', with the totals before
--        it, for the caller's own check of the same caps.
--    The caller builds each event's kind and data (one place for their text, in Rust).

CREATE FUNCTION oxi_claim_task(
    p_task TEXT, p_from TEXT, p_to TEXT, p_at BIGINT, p_actor TEXT,
    p_state_kind TEXT, p_state_data TEXT,
    p_run TEXT, p_attempt BIGINT, p_role TEXT, p_worker TEXT, p_worker_kind TEXT,
    p_model TEXT, p_started_at BIGINT, p_run_dir TEXT, p_worktree TEXT, p_branch TEXT,
    p_supervisor_pid BIGINT, p_host TEXT, p_route TEXT, p_prompt_bytes BIGINT,
    p_run_actor TEXT, p_started_kind TEXT, p_started_data TEXT,
    p_day TEXT, p_month TEXT, p_reserve BIGINT, p_day_cap BIGINT, p_month_cap BIGINT,
    p_over_estimate_kind TEXT,
    OUT outcome TEXT, OUT day_spent BIGINT, OUT day_held BIGINT, OUT month_spent BIGINT,
    OUT month_held BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    rollup RECORD;
BEGIN
    day_spent := 0; day_held := 0; month_spent := 0; month_held := 0;
    PERFORM 1 FROM tasks WHERE id = p_task AND state = p_from FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        outcome := 'lost';
        RETURN;
    END IF;
    UPDATE tasks SET state = p_to, held_reason = NULL, failure_class = NULL,
        retry_at_ms = NULL, hold_kind = NULL, attempts = attempts + 1,
        worker_calls = worker_calls + 1, updated_at_ms = p_at
    WHERE id = p_task AND state = p_from;
    INSERT INTO events (at_ms, kind, task_id, run_id, actor, data)
        VALUES (p_at, p_state_kind, p_task, NULL, p_actor, p_state_data);
    INSERT INTO runs (id, task_id, attempt, role, worker, worker_kind, model, status,
            started_at_ms, run_dir, worktree, branch, supervisor_pid, host, route, prompt_bytes)
        VALUES (p_run, p_task, p_attempt, p_role, p_worker, p_worker_kind, p_model, 'running',
            p_started_at, p_run_dir, p_worktree, p_branch, p_supervisor_pid, p_host, p_route,
            p_prompt_bytes);
    INSERT INTO events (at_ms, kind, task_id, run_id, actor, data)
        VALUES (p_started_at, p_started_kind, p_task, p_run, p_run_actor, p_started_data);
    UPDATE approvals SET used_by_run = p_run
        WHERE task_id = p_task AND kind = p_over_estimate_kind AND used_by_run IS NULL;
    INSERT INTO spend_rollup (period) VALUES (p_day), (p_month) ON CONFLICT (period) DO NOTHING;
    FOR rollup IN SELECT period, spent, held FROM spend_rollup WHERE period IN (p_day, p_month)
                  ORDER BY period FOR UPDATE LOOP
        IF rollup.period = p_day THEN
            day_spent := rollup.spent; day_held := rollup.held;
        ELSE
            month_spent := rollup.spent; month_held := rollup.held;
        END IF;
    END LOOP;
    -- As `budget::admit`: the sums saturate (NUMERIC, then at the largest BIGINT) instead of
    -- overflowing.
    IF LEAST(day_spent::NUMERIC + day_held + p_reserve, 9223372036854775807) > p_day_cap
       OR LEAST(month_spent::NUMERIC + month_held + p_reserve, 9223372036854775807) > p_month_cap
    THEN
        RAISE EXCEPTION 'no room under the caps for task %', p_task USING ERRCODE = 'OXCAP';
    END IF;
    INSERT INTO spend (run_id, day, month, reserved_microusd, status, created_at_ms)
        VALUES (p_run, p_day, p_month, p_reserve, 'reserved', p_started_at);
    outcome := 'admitted';
END $$;

-- 3. A run's end in one statement (`Queries::finish_run`): the row finished if it was still
--    running (FALSE otherwise, and nothing written) and its run_finished event, whose kind
--    and data the caller builds; then, last, its reservation's rollup rows locked in key order
--    (as every other writer of them) and the reservation settled (p_release: released, the
--    money it held given back).

CREATE FUNCTION oxi_finish_run(
    p_run TEXT, p_classification TEXT, p_ended_at BIGINT, p_exit_code BIGINT,
    p_signal BIGINT, p_stop_reason TEXT, p_input_tokens BIGINT, p_cached_input_tokens BIGINT,
    p_output_tokens BIGINT, p_reasoning_tokens BIGINT, p_cost BIGINT, p_cli_version TEXT,
    p_session_id TEXT, p_parse_failures BIGINT, p_bytes_cut BIGINT, p_retry_after_ms BIGINT,
    p_detail TEXT, p_release BOOLEAN, p_actor TEXT, p_finished_kind TEXT,
    p_finished_data TEXT)
RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    run_task TEXT;
BEGIN
    UPDATE runs SET status = 'finished', classification = p_classification,
        ended_at_ms = p_ended_at, exit_code = p_exit_code, signal = p_signal,
        stop_reason = p_stop_reason, input_tokens = p_input_tokens,
        cached_input_tokens = p_cached_input_tokens, output_tokens = p_output_tokens,
        reasoning_tokens = p_reasoning_tokens, cost_microusd = p_cost,
        cli_version = p_cli_version, session_id = p_session_id,
        parse_failures = p_parse_failures, bytes_cut = p_bytes_cut,
        retry_after_ms = p_retry_after_ms, detail = p_detail, lease_expires_at_ms = NULL
    WHERE id = p_run AND status = 'running'
    RETURNING task_id INTO run_task;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    INSERT INTO events (at_ms, kind, task_id, run_id, actor, data)
        VALUES (p_ended_at, p_finished_kind, run_task, p_run, p_actor, p_finished_data);
    PERFORM 1 FROM spend_rollup WHERE period IN (
            SELECT day FROM spend WHERE run_id = p_run AND status = 'reserved'
            UNION ALL SELECT month FROM spend WHERE run_id = p_run AND status = 'reserved')
        ORDER BY period FOR UPDATE;
    UPDATE spend SET status = CASE WHEN p_release THEN 'released' ELSE 'settled' END,
        settled_at_ms = p_ended_at,
        actual_microusd = CASE WHEN p_release THEN GREATEST(actual_microusd, p_cost)
                               ELSE p_cost END
    WHERE run_id = p_run AND status = 'reserved';
    RETURN TRUE;
END $$;
