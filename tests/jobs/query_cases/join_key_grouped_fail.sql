-- fail: join_key_only_in_join, column: pums.pid
SELECT pid, COUNT(*) AS n FROM pums GROUP BY pid
