-- fail: join_key_only_in_join, column: pums.pid
SELECT race, COUNT(pid) AS persons FROM pums GROUP BY race
