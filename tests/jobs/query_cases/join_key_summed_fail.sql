-- fail: join_key_only_in_join, column: pums.pid
SELECT SUM(pid) AS s FROM pums
