-- fail: encrypted_column, column: tax.tax_enc
SELECT industry, COUNT(*) AS n FROM tax WHERE tax_enc IS NOT NULL GROUP BY industry
